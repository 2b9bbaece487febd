"""limakit: the LIMA recipe ("Less Is More for Alignment") as a toolkit.

Curate a small, diverse alignment set from raw dumps, fine-tune a pretrained model on it with the
paper's protocol, sample answers with the paper's decoding, and judge them.
"""

__version__ = "0.1.0"
