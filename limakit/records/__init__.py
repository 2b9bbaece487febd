"""The data shape: the ``Example`` every stage exchanges (``example``), other formats and the
converters to and from them (``formats``, ``converters``), the chat format that turns an example
into tokens and labels in one pass (``template``), and the token-by-token view of it
(``inspect``)."""
