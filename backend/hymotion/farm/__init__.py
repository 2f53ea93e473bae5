"""`hymotion farm`: a long prompt list spread over every GPU of a workstation or a Ray cluster (docs/farm.md).

:mod:`.planning` turns the prompt file into clips, units and libraries without Ray; :mod:`.worker` holds what runs on
the workers (one pipeline per GPU as a Ray actor, the library bake task); :mod:`.driver` hands out units, survives
dead workers, resumes and writes the index and summary; :mod:`.command` is the command line.
"""
