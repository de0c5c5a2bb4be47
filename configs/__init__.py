"""The shipped configs, installed as package data (videoclf.config.assets finds them)."""
