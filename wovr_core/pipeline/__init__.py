"""The loop's jobs: ``wovr demo`` (everything on the twin) and ``wovr retrain`` (the nightly run) + ``wovr report``.

``wovr retrain``: :mod:`.retrain` (runs, resume, idempotence), :mod:`.stages` (the stage contract and registry),
:mod:`.ingest`, :mod:`.training`, :mod:`.evaluation`, :mod:`.gate` + :mod:`.promote`, :mod:`.push`,
:mod:`.smoke` (stand-in stages for the ``smoke`` preset); :mod:`.workspace`, :mod:`.lock`, :mod:`.manifest`
for the files. ``wovr report``: :mod:`.report` + :mod:`.plots`.
"""
