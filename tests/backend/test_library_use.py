"""The pipeline as a library: a plain script without a ``__main__`` guard works on every plan.

Decoding used to run on a process pool when sampling on a GPU plan; spawned workers re-import ``__main__``, which a
guard-less script cannot survive. Here the GPU plans' placement runs on the CPU (device="cpu"), which takes the same
decoding path as on a CUDA device: the plan, not the device, chooses it.
"""

from backend_helpers import run_guardless_script


def test_a_script_without_main_guard_generates_on_a_gpu_plan(tmp_path):
    assert run_guardless_script(tmp_path, "gpu", "cpu") == "clips 4 children 0"


def test_gpu_plans_decode_on_the_sampling_device_and_the_cpu_plan_in_numpy(tmp_path, monkeypatch):
    from hymotion.pipeline import motion, motion_torch
    from hymotion.pipeline.loading import load_pipeline
    from hymotion.shared.jobs import GenerationSettings

    calls = []
    for module, name in ((motion_torch, "decode_latents"), (motion, "decode_latent")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    settings = GenerationSettings(["a person waves"], [1.0], [0], steps=1)
    for plan in ("gpu", "cpu"):
        list(load_pipeline("tiny-random", plan=plan, device="cpu", cache_dir=tmp_path).generate(settings))
    assert calls == ["decode_latents", "decode_latent"]
