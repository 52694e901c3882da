"""Map normalizations (METHOD.md §5) against NumPy, on fresh random maps."""
import numpy as np
import pytest
import torch

from wsol_fast.ops import eval_reference as reference
from wsol_fast.ops import evaluation

SHAPES = [(3, 7, 5), (2, 13, 11), (2, 1, 1), (4, 1, 9), (2, 28, 28), (1, 224, 224)]
PERCENTS = [0, 0.3, 1.5, 25, 33.3333, 50, 62.5, 90, 97, 99, 99.5, 99.9, 100]


def random_maps(shape, dtype=torch.float32, seed=0, ties=False):
    generator = torch.Generator().manual_seed(seed)
    if ties:  # few distinct values: many equal order statistics
        return torch.randint(0, 4, shape, generator=generator).to(dtype) / 3
    return torch.rand(shape, generator=generator, dtype=torch.float64).to(dtype)


def numpy_ratio(numerator, denominator):
    if denominator > 0:
        return np.clip(numerator / denominator, 0, 1)
    return (numerator > 0).astype(numerator.dtype)


def compute_array(m):
    """A map as NumPy in the compute dtype: float64 for float64 maps, else float32."""
    return m.numpy() if m.dtype == torch.float64 else m.float().numpy()


def numpy_normalize(m, name, p=None):
    """The normalizations of METHOD.md §5, one map (H, W), computed in its dtype."""
    if name == "minmax":
        return numpy_ratio(m - m.min(), m.max() - m.min())
    if name == "max":
        return numpy_ratio(m, m.max())
    if name == "percentile":
        return numpy_ratio(m, np.percentile(m, p))
    if name == "pas":
        scaled = numpy_normalize(m, "minmax")
        return numpy_ratio(scaled, np.percentile(scaled, p))
    level = np.percentile(m, p)
    return numpy_ratio(np.maximum(m - level, 0), m.max() - level)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_percentile_equals_numpy_bit_for_bit(shape, dtype):
    maps = (random_maps(shape, dtype, seed=sum(shape)) - 0.3) * 7
    for p in PERCENTS:
        ours = reference.percentile(maps, p)
        expected = np.array([np.percentile(m.numpy(), p) for m in maps])
        assert ours.dtype == dtype
        np.testing.assert_array_equal(ours.numpy(), expected.astype(ours.numpy().dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_percentile_of_low_precision_maps_is_float32_of_their_values(dtype):
    maps = random_maps((3, 15, 17), dtype, seed=3)
    for p in (10, 50, 97.5):
        expected = np.array([np.percentile(m.float().numpy(), p) for m in maps])
        ours = reference.percentile(maps, p)
        assert ours.dtype == torch.float32
        np.testing.assert_array_equal(ours.numpy(), expected)


def test_percentile_with_ties_and_non_contiguous_maps():
    maps = random_maps((3, 12, 21), ties=True, seed=5)[:, ::2, 1::3].transpose(1, 2)
    assert not maps.is_contiguous()
    for p in PERCENTS:
        expected = np.array([np.percentile(m.numpy(), p) for m in maps])
        np.testing.assert_array_equal(reference.percentile(maps, p).numpy(), expected.astype(np.float32))


NORMALIZATIONS = [("minmax", None), ("max", None), ("percentile", 99), ("percentile", 90.5),
                  ("pas", 90), ("ivr", 65), ("ivr", 99)]


def spec_of(name, p):
    return name if p is None else f"{name}:{p}"


@pytest.mark.parametrize("name,p", NORMALIZATIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_normalizations_match_numpy(name, p, dtype):
    for index, shape in enumerate(SHAPES[:5]):
        maps = random_maps(shape, dtype, seed=index + 11, ties=index == 1)
        ours = reference.normalize(maps, spec_of(name, p))
        assert ours.dtype == torch.float32 and ours.shape == maps.shape
        expected = np.stack([numpy_normalize(compute_array(m), name, p) for m in maps])
        np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-7)


def test_normalizations_accept_non_contiguous_maps():
    maps = random_maps((2, 19, 30), seed=21)[:, 1::2, ::3].transpose(1, 2)
    for name, p in NORMALIZATIONS:
        expected = reference.normalize(maps.contiguous(), spec_of(name, p))
        torch.testing.assert_close(reference.normalize(maps, spec_of(name, p)), expected, rtol=0, atol=0)


def test_percentile_max_at_100_is_max_normalization():
    maps = random_maps((3, 9, 14), seed=4) * 5
    torch.testing.assert_close(reference.percentile_max_normalize(maps, 100),
                               reference.max_normalize(maps), rtol=0, atol=0)


def test_pas_default_percentile_is_90():
    maps = random_maps((2, 10, 10), seed=8)
    torch.testing.assert_close(reference.normalize(maps, "pas"), reference.pas_normalize(maps, 90))


@pytest.mark.parametrize("name,p", NORMALIZATIONS)
def test_constant_and_zero_maps_are_finite_and_defined(name, p):
    maps = torch.stack([torch.zeros(6, 5), torch.full((6, 5), 0.7), random_maps((6, 5), seed=2)])
    ours = reference.normalize(maps, spec_of(name, p))
    assert torch.isfinite(ours).all()
    assert (ours[0] == 0).all()
    # a constant positive map: the ratio 1 where M is divided by itself, else 0 (nothing above)
    constant_value = 1.0 if name in ("max", "percentile") else 0.0
    assert (ours[1] == constant_value).all()
    expected = numpy_normalize(compute_array(maps[2]), name, p)
    np.testing.assert_allclose(ours[2].numpy(), expected, rtol=0, atol=1e-7)


def test_percentile_zero_divides_by_the_limit():
    maps = torch.zeros(1, 10, 10)
    maps[0, 0, :3] = torch.tensor([0.2, 0.9, 0.5])  # 97 zeros: P_90 = 0
    ours = reference.percentile_max_normalize(maps, 90)
    assert torch.equal(ours, (maps > 0).float())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_are_rejected_with_the_map_index(bad):
    maps = random_maps((5, 4, 4), seed=1)
    maps[1, 2, 3] = bad
    maps[3, 0, 0] = bad
    for call in (lambda: reference.percentile(maps, 50), lambda: reference.normalize(maps, "minmax"),
                 lambda: reference.percentile_max_normalize(maps, 99)):
        with pytest.raises(ValueError, match=r"map index\(es\) 1, 3"):
            call()


@pytest.mark.parametrize("spec", ["", "foo", "percentile", "ivr", "minmax:3", "max:50", "pas:x",
                                  "percentile:101", "percentile:-1", "ivr:nan"])
def test_bad_specs_are_rejected(spec):
    with pytest.raises(ValueError, match="normalization"):
        reference.normalize(random_maps((1, 3, 3)), spec)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="float tensor"):
        reference.percentile(torch.ones(2, 3, 3, dtype=torch.int64), 50)
    with pytest.raises(ValueError, match="float tensor"):
        reference.minmax_normalize(torch.rand(3, 3))
    with pytest.raises(ValueError, match=r"p=120"):
        reference.percentile(torch.rand(1, 3, 3), 120)


def test_parse_normalization():
    assert reference.parse_normalization("percentile:99.5") == ("percentile", 99.5)
    assert reference.parse_normalization(" pas ") == ("pas", None)
    assert reference.parse_normalization("ivr:65") == ("ivr", 65.0)


def test_dispatch_serves_the_reference(monkeypatch):
    maps = random_maps((2, 11, 13), seed=9)
    for forced in ("reference", ""):
        monkeypatch.setenv("WSOL_FAST_OPS", forced)
        torch.testing.assert_close(evaluation.normalize(maps, "percentile:97"),
                                   reference.percentile_max_normalize(maps, 97), rtol=0, atol=0)
        torch.testing.assert_close(evaluation.percentile_max_normalize(maps, 99),
                                   reference.percentile_max_normalize(maps, 99), rtol=0, atol=0)
