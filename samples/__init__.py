"""The shipped sample clip, installed as package data (videoclf.config.assets finds it)."""
