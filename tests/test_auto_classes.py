"""``import ablate`` alone makes ``AutoModel.from_pretrained(directory)`` load a native
checkpoint (the README's promise), without importing torch or transformers itself."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import torch

from ablate.checkpoint import save_checkpoint
from ablate.tokenizer import ByteTokenizer
from tests.conftest import tiny_model

IDS = torch.tensor([[5, 17, 200, 3]])


def test_automodel_loads_a_native_checkpoint_after_import_ablate_alone(tmp_path):
    # A fresh interpreter: import ablate (which must not import torch or transformers),
    # then transformers; AutoModel must build a MatrixThinker with the saved weights.
    model = tiny_model(3)
    save_checkpoint(model, ByteTokenizer(), tmp_path / "ck", metadata={"command": "test"})
    script = textwrap.dedent(f"""
        import json, sys
        import ablate
        light = not {{"torch", "transformers"}} & set(sys.modules)
        from transformers import AutoModel
        import torch
        model = AutoModel.from_pretrained({str(tmp_path / "ck")!r}).eval()
        with torch.no_grad():
            logits = model(torch.tensor({IDS.tolist()}), 3).logits
        print(json.dumps({{"light": light, "type": type(model).__name__,
                           "logits": logits.flatten().tolist()}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["light"] and result["type"] == "MatrixThinker"
    with torch.no_grad():
        expected = model(IDS, 3).logits.flatten()
    assert torch.equal(torch.tensor(result["logits"]), expected)


def test_with_transformers_already_imported_registration_is_immediate():
    from transformers import AutoConfig

    from ablate.auto_classes import register_when_transformers_loads
    from ablate.model import MatrixThinkerConfig

    register_when_transformers_loads()
    assert AutoConfig.for_model("matrix_thinker").__class__ is MatrixThinkerConfig
