"""The one error type shown to people: the CLI prints its message and exits non-zero."""


class LimaError(Exception):
    """A problem with the user's input, config or environment, phrased for a person.

    The message should name the file, the record (line or offset) and the rule broken, e.g.
    ``data.jsonl:12: roles must alternate user/assistant (message 3 is 'user' after 'user')``.
    """
