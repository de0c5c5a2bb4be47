"""videoclf stages: decode, preprocess, classify, sinks and backbones."""
