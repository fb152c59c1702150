"""bench_pipeline.py: images/second of the ResNet input pipeline done the torchvision way, the
counterpart of tools/bench_pipeline.cpp on the same machine. Run with Debian's interpreter:

    /usr/bin/python3 tools/bench_pipeline.py [--size 224] [--batch 64] [--batches 8] [--runs 7]

Measures, at 1 thread and at all threads (torch.set_num_threads):
  batch   the whole uint8 batch through ConvertImageDtype -> Resize (bilinear, antialias=False)
          -> expand to 3 channels -> Normalize, as tensors (the same work as the fused C++ kernel)
  per-image  the usual Dataset path: each PIL image through ToTensor -> Resize -> repeat -> Normalize,
          then torch.stack (1 thread only; it is per image).
Median of several runs after a warm-up, like the C++ benchmark."""
import argparse
import gzip
import json
import os
import statistics
import time

import numpy as np
import torch
import torchvision.transforms as T

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_images(n, data_dir):
    path = os.path.join(data_dir, "t10k-images-idx3-ubyte.gz")
    if os.path.exists(path):
        with gzip.open(path, "rb") as f:
            raw = f.read()
        imgs = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 28, 28)
        if len(imgs) >= n:
            return torch.from_numpy(imgs[:n].copy()), "Fashion-MNIST test images"
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g), "random uint8 images"


def images_per_second(runs, n, work):
    work()
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        work()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--data-dir", default=os.environ.get("DL_DATA_DIR", "/usr/share/datasets/fashion-mnist"))
    p.add_argument("--no-per-image", action="store_true", help="skip the (slow) per-image PIL path")
    a = p.parse_args()

    n = a.batch * a.batches
    images, source = load_images(n, a.data_dir)
    batches = [images[i * a.batch:(i + 1) * a.batch].unsqueeze(1).contiguous() for i in range(a.batches)]
    batch_tf = T.Compose([
        T.ConvertImageDtype(torch.float32),
        T.Resize((a.size, a.size), interpolation=T.InterpolationMode.BILINEAR, antialias=False),
        T.Lambda(lambda x: x.expand(-1, 3, -1, -1)),
        T.Normalize(MEAN, STD),
    ])
    all_threads = os.cpu_count() or 1
    print(f"ResNet input pipeline (torch {torch.__version__}): uint8 28x28 -> normalised 3x{a.size}x{a.size} float32, "
          f"batch {a.batch}, {a.batches} batches per run, median of {a.runs} runs ({source})")
    result = {"size": a.size, "batch": a.batch}
    with torch.no_grad():
        for threads in sorted({1, all_threads}):
            torch.set_num_threads(threads)

            def run_batches():
                for b in batches:
                    batch_tf(b)
            r = images_per_second(a.runs, n, run_batches)
            result[f"torchvision_batch_{threads}_threads"] = round(r)
            print(f"  torchvision batch transforms, {threads:2d} thread(s)   {r:10.0f} images/s")
        if not a.no_per_image:
            from PIL import Image
            torch.set_num_threads(1)
            pil = [Image.fromarray(img.numpy(), mode="L") for img in images]
            per_image_tf = T.Compose([
                T.ToTensor(),
                T.Resize((a.size, a.size), interpolation=T.InterpolationMode.BILINEAR, antialias=False),
                T.Lambda(lambda x: x.repeat(3, 1, 1)),
                T.Normalize(MEAN, STD),
            ])

            def run_per_image():
                for i in range(0, n, a.batch):
                    torch.stack([per_image_tf(im) for im in pil[i:i + a.batch]])
            r = images_per_second(max(1, a.runs // 2), n, run_per_image)
            result["torchvision_per_image_1_thread"] = round(r)
            print(f"  torchvision per-image (PIL) + stack, 1 thread {r:10.0f} images/s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
