"""wtp: pricing and willingness-to-pay research, from survey files to a defensible price book."""

__version__ = "0.1.0"
