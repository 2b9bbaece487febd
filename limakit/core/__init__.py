"""Infrastructure every other package stands on: errors meant for people (``errors``), all JSON
and JSONL I/O with atomic writes (``files``), typed YAML configs (``config``), named crash points
for resume tests (``faults``), the request-body cap of the web apps (``asgi``) and the one stderr
console with its notes, warnings and progress bars (``console``)."""
