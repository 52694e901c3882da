"""PxAP: the extension's histograms against the brute-force reference and numpy.histogram, and
``metrics.PxAPCounts`` against a NumPy transcription of wsolevaluation's MaskEvaluator
(``get_mask``, ``accumulate``, ``compute``). Random inputs are fresh every run. CUDA tests run
only where a GPU and a CUDA build are present."""
import numpy as np
import pytest
import torch

from wsol_fast.metrics import PxAPCounts, default_thresholds
from wsol_fast.ops import eval_reference as reference
from wsol_fast.ops import checks, evaluation, ext

pytestmark = pytest.mark.extension

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
THRESHOLD_SETS = {
    "step 0.01": default_thresholds(),
    "step 0.001": default_thresholds(0.001),
    "one": [0.5],
    "from 0.3, repeated, with 1.0": [0.3, 0.3, 0.45, 0.7, 0.7, 0.9, 1.0],
}


def test_the_extension_is_built_here():
    """The tests below call the CPU extension directly: it must be built, not skipped."""
    assert ext.available(), "wsol_fast._C is not built: run `pip install --no-build-isolation -e .`"


# ---- inputs ----

def special_values(thresholds) -> torch.Tensor:
    """float64 values on and next to every edge, and beyond the edges on both sides."""
    edges = checks.pxap_edges(thresholds)
    around = torch.cat([edges, torch.nextafter(edges, torch.tensor(-np.inf, dtype=torch.float64)),
                        torch.nextafter(edges, torch.tensor(np.inf, dtype=torch.float64))])
    beyond = torch.tensor([0.0, -0.0, 1.0, 2.0, 3.0, 3.5, -0.25, 1e-30], dtype=torch.float64)
    return torch.cat([around, beyond])


def random_maps(batch, height, width, dtype, thresholds) -> torch.Tensor:
    """Uniform values in [0, 1] with about a third of the pixels replaced by special values
    (edges rounded to ``dtype``, values next to them, 0, 1, 2, 3, values outside the edges)."""
    maps = torch.rand(batch, height, width, dtype=torch.float64)
    specials = special_values(thresholds)
    chosen = torch.rand(maps.shape) < 0.35
    maps[chosen] = specials[torch.randint(len(specials), (int(chosen.sum()),))]
    return maps.to(dtype)


def random_masks(maps: torch.Tensor, with_ignore: bool):
    masks = torch.rand(maps.shape) < 0.4
    ignore = torch.rand(maps.shape) < 0.3 if with_ignore else None
    return masks, ignore


def numpy_histograms(maps: torch.Tensor, masks, ignore, thresholds) -> tuple[np.ndarray, np.ndarray]:
    """numpy.histogram per map of the values at mask pixels and at the other counted pixels."""
    edges = np.append(np.asarray(thresholds, dtype=np.float64), [1.0, 2.0, 3.0])
    values = (maps.float() if maps.dtype == torch.bfloat16 else maps).numpy()  # bfloat16: exact in float32
    others = ~masks if ignore is None else ~masks & ~ignore
    mask_hist = [np.histogram(v[m], bins=edges)[0] for v, m in zip(values, masks.numpy())]
    other_hist = [np.histogram(v[o], bins=edges)[0] for v, o in zip(values, others.numpy())]
    return np.stack(mask_hist), np.stack(other_hist)


# ---- histograms: extension == reference == numpy.histogram ----

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 7, 13), (2, 1, 17), (2, 48, 56)])
@pytest.mark.parametrize("with_ignore", [False, True])
def test_histograms_match_reference_and_numpy(dtype, shape, with_ignore):
    for name, thresholds in THRESHOLD_SETS.items():
        maps = random_maps(*shape, dtype, thresholds)
        masks, ignore = random_masks(maps, with_ignore)
        got = ext.pxap_histograms(maps, masks, ignore, thresholds)
        expected = reference.pxap_histograms(maps, masks, ignore, thresholds)
        bins = len(thresholds) + 2
        for fast, slow, exact in zip(got, expected, numpy_histograms(maps, masks, ignore, thresholds)):
            assert fast.dtype == torch.int64 and fast.shape == (shape[0], bins), name
            assert torch.equal(fast, slow), name
            np.testing.assert_array_equal(slow.numpy(), exact, err_msg=name)


def test_float32_values_compare_with_float64_edges():
    """numpy puts float32(0.01) < 0.01 below the edge 0.01 and float32(0.3) > 0.3 above 0.3:
    the values are not compared with edges rounded to float32."""
    thresholds = [0.0, 0.01, 0.3]
    maps = torch.tensor([0.01, 0.3, 1.0, 0.0], dtype=torch.float32).view(1, 2, 2)
    assert float(maps[0, 0, 0]) < 0.01 and float(maps[0, 0, 1]) > 0.3
    masks = torch.ones_like(maps, dtype=torch.bool)
    expected = np.histogram(maps.numpy().ravel(), bins=thresholds + [1.0, 2.0, 3.0])[0]
    np.testing.assert_array_equal(expected, [2, 0, 1, 1, 0])
    for implementation in (ext.pxap_histograms, reference.pxap_histograms):
        mask_hist, other_hist = implementation(maps, masks, None, thresholds)
        np.testing.assert_array_equal(mask_hist[0].numpy(), expected)
        assert not other_hist.any()


def test_ignored_pixels_count_nowhere_unless_in_the_mask():
    """wsolevaluation's ignore region is the ignore box minus the foreground."""
    maps = torch.rand(2, 9, 11)
    masks = torch.rand(maps.shape) < 0.5
    everywhere = torch.ones_like(masks)
    for implementation in (ext.pxap_histograms, reference.pxap_histograms):
        mask_hist, other_hist = implementation(maps, masks, everywhere, default_thresholds())
        assert torch.equal(mask_hist.sum(dim=1), masks.sum(dim=(1, 2)))
        assert not other_hist.any()


def test_histograms_of_noncontiguous_inputs_and_through_the_registry(monkeypatch):
    maps = torch.rand(3, 17, 29).transpose(1, 2)
    masks = (torch.rand(3, 17, 29) < 0.5).transpose(1, 2)
    ignore = (torch.rand(3, 17, 29) < 0.2).transpose(1, 2)
    assert not (maps.is_contiguous() or masks.is_contiguous() or ignore.is_contiguous())
    thresholds = default_thresholds()
    expected = reference.pxap_histograms(maps.contiguous(), masks.contiguous(), ignore.contiguous(), thresholds)
    monkeypatch.delenv("WSOL_FAST_OPS", raising=False)
    assert evaluation.pxap_histograms.backend_for(maps) == "ext"
    for got in (ext.pxap_histograms(maps, masks, ignore, thresholds),
                evaluation.pxap_histograms(maps, masks, ignore, thresholds)):
        assert all(torch.equal(a, b) for a, b in zip(got, expected))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_histograms_reject_non_finite_maps_naming_the_map(bad):
    maps = torch.rand(4, 5, 6)
    maps[2, 1, 3] = bad
    masks = torch.rand(maps.shape) < 0.5
    with pytest.raises(ValueError, match="map 2 "):
        ext.pxap_histograms(maps, masks, None, default_thresholds())
    with pytest.raises(ValueError, match="maps: NaN or Inf in map index"):
        reference.pxap_histograms(maps, masks, None, default_thresholds())


@pytest.mark.parametrize("implementation", [ext.pxap_histograms, reference.pxap_histograms])
def test_histograms_reject_bad_arguments_naming_them(implementation):
    maps = torch.rand(2, 5, 6)
    masks = torch.rand(maps.shape) < 0.5
    levels = default_thresholds()
    cases = [
        ("maps", (torch.rand(5, 6), masks, None, levels)),
        ("masks", (maps, masks[:, :, :5], None, levels)),
        ("masks", (maps, masks.float(), None, levels)),
        ("ignore", (maps, masks, masks[:1], levels)),
        ("ignore", (maps, masks, masks.int(), levels)),
        ("thresholds", (maps, masks, None, [0.5, 0.2])),
        ("thresholds", (maps, masks, None, [0.5, 1.5])),
        ("thresholds", (maps, masks, None, [])),
    ]
    for name, arguments in cases:
        with pytest.raises(ValueError, match=name):
            implementation(*arguments)


def test_raw_extension_checks_its_edges():
    from wsol_fast import _C

    maps = torch.rand(2, 5, 6)
    masks = torch.rand(maps.shape) < 0.5
    for edges in (torch.tensor([0.0, 0.5, 1.0]), torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64),
                  torch.tensor([0.0], dtype=torch.float64), torch.tensor([0.0, np.nan], dtype=torch.float64)):
        with pytest.raises(ValueError, match="edges"):
            _C.pxap_histograms(maps, masks, None, edges)
    with pytest.raises(ValueError, match="masks"):
        _C.pxap_histograms(maps, masks[:, :4], None, torch.tensor([0.0, 1.0], dtype=torch.float64))


# ---- PxAPCounts against wsolevaluation's MaskEvaluator (NumPy transcription) ----

class WsolevaluationMasks:
    """MaskEvaluator of wsolevaluation, transcribed: the gt mask is 1 on the foreground, 255 on
    the ignore region minus the foreground, 0 elsewhere; float histograms over the thresholds
    followed by 1, 2, 3; the precision-recall AUC of reversed cumulative sums."""

    def __init__(self, thresholds):
        self.edges = np.append(np.asarray(thresholds, dtype=np.float64), [1.0, 2.0, 3.0])
        self.true_hist = np.zeros(len(self.edges) - 1)
        self.false_hist = np.zeros(len(self.edges) - 1)

    def accumulate(self, scoremap: np.ndarray, mask: np.ndarray, ignore_box: np.ndarray) -> None:
        ignore = np.logical_and(ignore_box, np.logical_not(mask))
        gt_mask = mask.astype(np.uint8) + 255 * ignore.astype(np.uint8)
        self.true_hist += np.histogram(scoremap[gt_mask == 1], bins=self.edges)[0].astype(float)
        self.false_hist += np.histogram(scoremap[gt_mask == 0], bins=self.edges)[0].astype(float)

    def compute(self) -> float:
        num_true = self.true_hist.sum()
        tp = self.true_hist[::-1].cumsum()
        fn = num_true - tp
        fp = self.false_hist[::-1].cumsum()
        if ((tp + fn) <= 0).all():
            raise RuntimeError("No positive ground truth in the eval set.")
        if ((tp + fp) <= 0).all():
            raise RuntimeError("No positive prediction in the eval set.")
        non_zero = (tp + fp) != 0
        with np.errstate(invalid="ignore"):
            precision = tp / (tp + fp)
        recall = tp / (tp + fn)
        return (precision[1:] * np.diff(recall))[non_zero[1:]].sum() * 100


def smooth_scores(batch, size, dtype=torch.float32) -> torch.Tensor:
    """Maps in [0, 1] loosely following a blob, so that PxAP is neither 0 nor 100."""
    grid = torch.linspace(-1, 1, size, dtype=torch.float64)
    centre = torch.rand(batch, 2, 1, 1, dtype=torch.float64) - 0.5
    blob = torch.exp(-((grid.view(1, -1, 1) - centre[:, 0]) ** 2 + (grid.view(1, 1, -1) - centre[:, 1]) ** 2) * 4)
    noisy = blob + 0.3 * torch.rand(batch, size, size, dtype=torch.float64)
    low, high = noisy.amin(dim=(1, 2), keepdim=True), noisy.amax(dim=(1, 2), keepdim=True)
    return ((noisy - low) / (high - low)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("thresholds", [None, default_thresholds(0.001), [0.0, 0.25, 0.25, 0.6]])
def test_pxap_equals_wsolevaluation(dtype, thresholds):
    counts = PxAPCounts(thresholds)
    original = WsolevaluationMasks(default_thresholds() if thresholds is None else thresholds)
    for batch in range(3):
        maps = smooth_scores(4, 33, dtype)
        masks = smooth_scores(4, 33) > 0.6
        ignore = torch.rand(maps.shape) < 0.1
        ignore[0] = False
        counts.update(maps, masks, ignore)
        for scoremap, mask, box in zip(maps.numpy(), masks.numpy(), ignore.numpy()):
            original.accumulate(scoremap, mask, box)
    expected = original.compute()
    assert 0 < expected < 100
    assert counts.summary() == {"pxap": expected}  # the same float operations: bit for bit
    precision, recall = counts.precision_recall()
    assert len(precision) == len(recall) == counts.thresholds.numel() + 2 and recall[-1] == 1.0


def test_perfect_map_scores_100_and_constant_maps_the_foreground_share():
    masks = smooth_scores(3, 20) > 0.5
    perfect = PxAPCounts()
    perfect.update(masks.float(), masks)
    assert perfect.summary()["pxap"] == 100.0
    share = 100 * float(masks.sum()) / masks.numel()
    for value in (0.0, 0.37, 1.0):
        constant = PxAPCounts()
        constant.update(torch.full(masks.shape, value), masks)
        assert constant.summary()["pxap"] == pytest.approx(share, rel=1e-12), value
        precision, _ = constant.precision_recall()
        assert np.isnan(precision[0])  # nothing reaches 2.0: 0 / 0 as in wsolevaluation


def test_pxap_without_positive_ground_truth_is_an_error():
    counts = PxAPCounts()
    with pytest.raises(ValueError, match="no positive ground truth"):
        counts.summary()
    maps = torch.rand(3, 8, 8)
    counts.update(maps, torch.zeros(maps.shape, dtype=torch.bool), torch.rand(maps.shape) < 0.5)
    counts.update(maps, torch.zeros(maps.shape, dtype=torch.bool))
    with pytest.raises(ValueError, match="no positive ground truth"):
        counts.summary()
    original = WsolevaluationMasks(default_thresholds())
    original.accumulate(maps[0].numpy(), np.zeros((8, 8), dtype=bool), np.zeros((8, 8), dtype=bool))
    with pytest.raises(RuntimeError, match="No positive ground truth"):
        original.compute()


def test_batches_and_ranks_add_up():
    maps = smooth_scores(6, 25)
    masks = smooth_scores(6, 25) > 0.5
    ignore = torch.rand(maps.shape) < 0.2
    whole = PxAPCounts()
    whole.update(maps, masks, ignore)
    batched = PxAPCounts()
    batched.update(maps[:2], masks[:2], ignore[:2])
    batched.update(maps[2:], masks[2:], ignore[2:])
    ranks = [PxAPCounts(), PxAPCounts()]
    ranks[0].update(maps[:4], masks[:4], ignore[:4])
    ranks[1].update(maps[4:], masks[4:], ignore[4:])
    summed = PxAPCounts()
    summed.load_state_dict({name: ranks[0].state[name] + ranks[1].state[name] for name in summed.state})
    for other in (batched, summed):
        assert all(torch.equal(whole.state[name], other.state[name]) for name in whole.state)
        assert other.summary() == whole.summary()


def test_pxap_counts_name_bad_arguments():
    with pytest.raises(ValueError, match="thresholds"):
        PxAPCounts([0.2, 0.1])
    counts = PxAPCounts()
    maps = torch.rand(2, 6, 7)
    masks = torch.rand(maps.shape) < 0.5
    with pytest.raises(ValueError, match="maps"):
        counts.update(maps[0], masks)
    with pytest.raises(ValueError, match="masks"):
        counts.update(maps, masks[:, :, :6])
    with pytest.raises(ValueError, match="ignore"):
        counts.update(maps, masks, masks[:1])


# ---- CUDA ----

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_histograms_equal_cpu(dtype):
    """Default thresholds (shared-memory histograms) and 6000 of them (too many edges for shared
    memory: global atomics)."""
    assert ext.has_cuda(), "wsol_fast._C was built without CUDA on a machine with a GPU: run `make setup`"
    for thresholds in (default_thresholds(), default_thresholds(1 / 6000)):
        for shape in ((1, 1, 1), (3, 7, 13), (5, 224, 224)):
            maps = random_maps(*shape, dtype, thresholds)
            masks, ignore = random_masks(maps, True)
            for hide in (None, ignore):
                expected = ext.pxap_histograms(maps, masks, hide, thresholds)
                got = ext.pxap_histograms(maps.cuda(), masks.cuda(), None if hide is None else hide.cuda(),
                                          thresholds)
                assert all(torch.equal(a.cpu(), b) for a, b in zip(got, expected)), shape
    maps = torch.rand(3, 8, 8).cuda()
    maps[1, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="map 1 "):
        ext.pxap_histograms(maps, torch.ones_like(maps, dtype=torch.bool), None, default_thresholds())
