"""adapler: adaptive length reduction for BERT-family classifiers."""
__version__ = "0.1.0"
