"""PyTorch counterparts of the framework's models, for the benchmark scripts (bench_torch.py,
dist_bench_torch.py). Import it after torch's thread settings are made."""
import torch.nn as nn


def scratch_cnn(channels=(48, 96, 256, 512), classes=10, dropout=0.3, in_channels=1):
    """models/scratch_cnn.h rebuilt with the same layers in the same order."""
    def block(cin, cout, pool):
        layers = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        if pool:
            layers.append(nn.MaxPool2d(2))
        return nn.Sequential(*layers)
    c = channels
    return nn.Sequential(block(in_channels, c[0], True), block(c[0], c[1], True), block(c[1], c[2], True),
                         block(c[2], c[3], False), nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(dropout),
                         nn.Linear(c[3], classes))
