"""Prompt -> motion: the pipeline every command runs (the CLI, the service, the farm, the bench).

One file a stage, read in the order of a generation: :mod:`.loading` (a model folder, the tiny model or the
known-answer flow -> a :class:`~.sampling.MotionPipeline` on the memory plan :mod:`.memory` chose;
:mod:`.layer_streaming` streams the text encoder through the GPU), :mod:`.sampling` (encode with the embedding cache,
sample the flow, decode; :mod:`.finite` lets no NaN out), :mod:`.known_frames` (frames pinned on the flow path:
continue, in-between, loop; whole poses or some channels), :mod:`.directing` and :mod:`.body_correction` (paths and
targets, met exactly after decoding), :mod:`.timeline` (prompts one after another as one motion), :mod:`.regenerate`
(a range of a motion file made anew), :mod:`.motion` and :mod:`.motion_torch` (the 201 features <-> root translation
and joint rotations). The models themselves live in :mod:`hymotion.model`.
"""
