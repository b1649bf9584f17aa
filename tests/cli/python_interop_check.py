#!/usr/bin/python3
"""Loads a state_dict written by tools/to_state_dict.py into a torch.nn
SimpleMLP and compares its logits with continua's (a JSON file of inputs and
logits). Exits 0 when they agree. Usage: python_interop_check.py STATE_DICT EXPECTED_JSON"""
import json
import sys

import torch
from torch import nn


def simple_mlp(sd):
    """The torch.nn module continua's SimpleMLP is, sized from the state_dict."""
    model = nn.Module()
    idx = sorted({int(k.split(".")[1]) for k in sd if k.startswith("features.")})
    layers = []
    for i in range(idx[-1] + 1 if idx else 0):
        if f"features.{i}.weight" in sd:
            out_f, in_f = sd[f"features.{i}.weight"].shape
            layers.append(nn.Linear(in_f, out_f))
        elif layers and isinstance(layers[-1], nn.Linear):
            layers.append(nn.ReLU())
        else:
            layers.append(nn.Dropout(0.0))
    if layers and isinstance(layers[-1], nn.Linear):
        layers.append(nn.ReLU())
    model.features = nn.Sequential(*layers)
    model.classifier = nn.Module()
    out_f, in_f = sd["classifier.head.weight"].shape
    model.classifier.head = nn.Linear(in_f, out_f)
    return model


def main(state_dict_path, expected_path):
    sd = torch.load(state_dict_path)
    model = simple_mlp(sd)
    model.load_state_dict(sd, strict=True)  # every key, every shape
    model.eval()
    expected = json.load(open(expected_path))
    x = torch.tensor(expected["x"], dtype=torch.float32)
    want = torch.tensor(expected["logits"], dtype=torch.float32)
    with torch.no_grad():
        got = model.classifier.head(model.features(x.reshape(x.shape[0], -1)))
    diff = (got - want).abs().max().item()
    same_argmax = bool((got.argmax(1) == want.argmax(1)).all())
    print(f"samples {x.shape[0]} classes {want.shape[1]} max_abs_diff {diff:.3g} same_predictions {same_argmax}")
    if diff > 1e-4 or not same_argmax:
        sys.exit("python_interop_check.py: PyTorch's logits differ from continua's")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
