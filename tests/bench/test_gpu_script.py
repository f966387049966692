"""bench.gpu is written before a GPU is at hand: its path runs on a CPU so that it cannot rot unseen."""

from bench import gpu


def test_the_gpu_script_runs_lthrays_loop_on_a_cpu_and_prints_a_row_per_mode(capsys):
    assert gpu.main(["--device", "cpu", "--models", "convnet", "--modes", "off,bogus", "--steps", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    eager = next(line for line in out if " off " in line)
    assert "steps/s" in eager and "1.00 of eager" in eager and "of float32 matmul" in eager
    assert any("bogus" in line and "failed: ConfigError" in line for line in out)  # a bad mode is a row, not a crash


def test_the_gpu_script_refuses_cuda_without_a_gpu(monkeypatch, capsys):
    monkeypatch.setattr(gpu.torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--device", "cuda"]) == 2
    assert "no GPU" in capsys.readouterr().err
