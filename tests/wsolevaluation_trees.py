"""Tiny wsolevaluation metadata trees made from the synthetic generator, for the tests: a
CUB-like tree (boxes) and an OpenImages-like one (instance masks and ignore masks as PNGs), and
wsolevaluation's MaskEvaluator written out plainly (``ReferencePxAPCounts``) to check PxAP against.

Layout (as clovaai/wsolevaluation's): ``<root>/metadata/<CUB|OpenImages>/<train|val|test>/``
with ``image_ids.txt``, ``class_labels.txt``, ``image_sizes.txt`` (CUB) and ``localization.txt``
(train: CUB only), image paths relative to ``<root>/data`` (a synthetic set in CUB layout),
OpenImages mask paths relative to it too (``masks/<split>/``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from wsol_fast.data import SyntheticSpec, generate_synthetic, read_cub, render_sample

TREE_SPEC = SyntheticSpec(num_classes=3, train_per_class=3, test_per_class=4, image_size=64, seed=0)


@dataclass
class Tree:
    """A fabricated tree: ``metadata`` (the dataset's folder), ``data`` (image root), and per split
    the relative image ids, labels, and (OpenImages) the expected full-size mask and ignore arrays."""

    metadata: Path
    data: Path
    ids: dict[str, list[str]]
    labels: dict[str, list[int]]
    masks: dict[str, list[np.ndarray]]
    ignores: dict[str, list[np.ndarray]]


def _sample_index(path: Path) -> int:
    """The generator's sample index from its file name ``<name>_<index:04d>.jpg``."""
    return int(path.stem.rsplit("_", 1)[1])


def _splits(data: Path) -> dict[str, list[tuple[Path, int, np.ndarray]]]:
    """(image path, label, boxes) of train (the synthetic train images) and of val and test (the
    first and the last half of each class's test images)."""
    train, test = read_cub(data, "train"), read_cub(data, "test")
    rows = {"train": list(zip(train.image_paths, train.labels.tolist(), train.boxes)), "val": [], "test": []}
    for label in range(test.num_classes):
        members = [(test.image_paths[i], label, test.boxes[i]) for i in np.flatnonzero(test.labels == label)]
        half = len(members) // 2
        rows["val"] += members[:half]
        rows["test"] += members[half:]
    return rows


def _write(folder: Path, tables: dict[str, list[str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in tables.items():
        (folder / name).write_text("\n".join(lines) + "\n")


def fabricate_tree(root: Path, dataset: str = "CUB", spec: SyntheticSpec = TREE_SPEC) -> Tree:
    """Write the images (once per ``root``) and the ``dataset`` ("CUB" or "OpenImages") metadata."""
    data = generate_synthetic(root / "data", spec)
    metadata = root / "metadata" / dataset
    tree = Tree(metadata, data, {}, {}, {}, {})
    for split, rows in _splits(data).items():
        ids = [path.relative_to(data.resolve()).as_posix() for path, _, _ in rows]
        tree.ids[split], tree.labels[split] = ids, [label for _, label, _ in rows]
        tables = {"image_ids.txt": ids, "class_labels.txt": [f"{i},{label}" for i, (_, label, _) in zip(ids, rows)]}
        if dataset == "CUB":
            tables["image_sizes.txt"] = [f"{i},{spec.image_size},{spec.image_size}" for i in ids]
            tables["localization.txt"] = [f"{i},{','.join(str(int(v)) for v in box)}"
                                          for i, (_, _, boxes) in zip(ids, rows) for box in boxes]
        elif split != "train":
            tables["localization.txt"] = _write_masks(tree, split, rows, spec)
        _write(metadata / split, tables)
    return tree


def _write_masks(tree: Tree, split: str, rows, spec: SyntheticSpec) -> list[str]:
    """Mask PNGs of ``rows`` and their ``localization.txt`` lines: the object cut into a left and
    a right instance (one instance for odd sample indices), an ignore mask (the object's box
    grown by 4 px) on the first line of all but the last image, which has none."""
    lines, tree.masks[split], tree.ignores[split] = [], [], []
    folder = tree.data / "masks" / split
    folder.mkdir(parents=True, exist_ok=True)
    for number, (path, label, _) in enumerate(rows):
        index = _sample_index(path)
        mask = render_sample(spec, label, index).object_mask
        image_id = path.relative_to(tree.data.resolve()).as_posix()
        columns = np.flatnonzero(mask.any(axis=0))
        middle = (columns[0] + columns[-1]) // 2
        left, right = mask.copy(), mask.copy()
        left[:, middle:], right[:, :middle] = False, False
        instances = [left, right] if index % 2 == 0 else [mask]
        ignore = np.zeros_like(mask)
        if number < len(rows) - 1:
            rows_on, columns_on = np.flatnonzero(mask.any(axis=1)), columns
            ignore[max(rows_on[0] - 4, 0):rows_on[-1] + 5, max(columns_on[0] - 4, 0):columns_on[-1] + 5] = True
        for k, instance in enumerate(instances):
            name = f"masks/{split}/{path.stem}_m{k}.png"
            Image.fromarray(instance.astype(np.uint8) * 255).save(tree.data / name)
            ignore_name = ""
            if k == 0 and ignore.any():
                ignore_name = f"masks/{split}/{path.stem}_ignore.png"
                Image.fromarray(ignore.astype(np.uint8) * 255).save(tree.data / ignore_name)
            lines.append(f"{image_id},{name},{ignore_name}")
        tree.masks[split].append(mask)
        tree.ignores[split].append(ignore & ~mask)
    return lines


class ReferencePxAPCounts:
    """PxAP as wsolevaluation's MaskEvaluator computes it (numpy histograms of the map values at
    mask and at other non-ignored pixels over the thresholds, then the area under the PR curve)."""

    def __init__(self, thresholds):
        self.edges = np.append(np.asarray(thresholds, dtype=np.float64), [1.0, 2.0, 3.0])
        self.state = {"true": torch.zeros(len(self.edges) - 1, dtype=torch.float64),
                      "false": torch.zeros(len(self.edges) - 1, dtype=torch.float64)}

    def update(self, maps: torch.Tensor, masks: torch.Tensor, ignore: torch.Tensor | None) -> None:
        values = maps.double().numpy()
        masks = masks.numpy()
        others = ~masks if ignore is None else ~(masks | ignore.numpy())
        self.state["true"] += torch.from_numpy(np.histogram(values[masks], bins=self.edges)[0].astype(np.float64))
        self.state["false"] += torch.from_numpy(np.histogram(values[others], bins=self.edges)[0].astype(np.float64))

    def summary(self) -> dict:
        true, false = self.state["true"].numpy(), self.state["false"].numpy()
        tp, fp = true[::-1].cumsum(), false[::-1].cumsum()
        fn = true.sum() - tp
        predicted = (tp + fp) != 0
        precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=predicted)
        recall = tp / (tp + fn)
        return {"pxap": float(100 * (precision[1:] * np.diff(recall))[predicted[1:]].sum())}
