"""The human half of the paper's study: a small web app for blinded pairwise annotation.

``lima annotate serve`` shows people one prompt and two answers (sides swapped at random, the swap
recorded), ``lima annotate export`` writes their verdicts in the LLM judge's format, and the
interop module exchanges files with Label Studio and Argilla.
"""
