"""Task streams: rotation against np.rot90 and a numpy bilinear reference, splits, permutations."""

import numpy as np
import pytest

from ntk_limits import data


def _images(n=3, h=9, w=9, c=2, seed=0):
    return np.random.default_rng(seed).random((n, h, w, c), dtype=np.float32)


def _dataset(x, y, k):
    return data.Dataset(x, np.asarray(y, np.int32), k, "toy", "test", "train")


def _bilinear_rotate(image, angle):
    """Independent reference: counter-clockwise rotation of one (H, W) image, inverse mapping."""
    h, w = image.shape
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    t = np.deg2rad(angle)
    # Output pixel (row, col) samples the source at the output point rotated back by -angle,
    # in coordinates x = col - cx, y = cy - row (y pointing up, as the image is displayed).
    x, y = cols - cx, cy - rows
    sx, sy = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
    src_r, src_c = cy - sy, sx + cx
    r0, c0 = np.floor(src_r).astype(int), np.floor(src_c).astype(int)
    fr, fc = src_r - r0, src_c - c0
    padded = np.pad(image, 1)
    pick = lambda r, c: padded[np.clip(r + 1, 0, h + 1), np.clip(c + 1, 0, w + 1)]
    return ((1 - fr) * (1 - fc) * pick(r0, c0) + (1 - fr) * fc * pick(r0, c0 + 1)
            + fr * (1 - fc) * pick(r0 + 1, c0) + fr * fc * pick(r0 + 1, c0 + 1))  # fmt: skip


def test_rotation_exact_at_multiples_of_90_degrees():
    x = _images()
    np.testing.assert_array_equal(data.rotate_images(x, 0), x)
    np.testing.assert_array_equal(data.rotate_images(x, 90), np.rot90(x, 1, axes=(1, 2)))
    np.testing.assert_array_equal(data.rotate_images(x, 180), np.rot90(x, 2, axes=(1, 2)))
    np.testing.assert_array_equal(data.rotate_images(x, -90), np.rot90(x, 3, axes=(1, 2)))


def test_bilinear_rotation_sign_and_values():
    x = np.zeros((1, 15, 15, 1), np.float32)
    x[0, 3:7, 4:12, 0] = np.linspace(0.1, 1.0, 32, dtype=np.float32).reshape(4, 8)
    # Just off 90 degrees the bilinear path must agree with np.rot90 (same sign convention);
    # a 0.01 degree turn moves corner pixels by ~1e-3 px, so values move by < 1e-2.
    near = data.rotate_images(x, 89.99)
    np.testing.assert_allclose(near, np.rot90(x, 1, axes=(1, 2)), atol=1e-2)
    for angle in (30.0, -50.0):
        got = data.rotate_images(x, angle)[0, ..., 0]
        want = _bilinear_rotate(x[0, ..., 0], angle)
        # the content lies well inside the frame, so boundary conventions do not enter;
        # float32 (scipy) against float64 (reference) interpolation weights.
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_rotation_fills_with_the_background():
    x = np.full((1, 8, 8, 1), -0.4, np.float32)  # e.g. a standardised black background
    x[0, 3:5, 3:5, 0] = 2.0
    corners = data.rotate_images(x, 45)[0, [0, 0, -1, -1], [0, -1, 0, -1], 0]
    np.testing.assert_allclose(corners, -0.4, atol=1e-6)  # float32 add/subtract of -0.4


def test_rotated_stream_defaults():
    train, test = _dataset(_images(4), [0, 1, 2, 0], 3), _dataset(_images(2, seed=1), [1, 2], 3)
    tasks = data.rotated_stream(train, test)
    assert [t.description for t in tasks] == [f"rotation {a} deg" for a in
                                              ("0", "22.5", "45", "67.5", "90")]  # fmt: skip
    np.testing.assert_array_equal(tasks[0].x_train, train.x)
    np.testing.assert_array_equal(tasks[-1].x_test, np.rot90(test.x, 1, axes=(1, 2)))
    assert all(np.array_equal(t.y_train, train.y) and t.num_classes == 3 for t in tasks)
    assert [t.task_id for t in tasks] == list(range(5))


def test_split_stream_disjoint_covering_and_relabelled():
    y = np.arange(60) % 6
    train, test = _dataset(_images(60), y, 6), _dataset(_images(12, seed=2), y[:12], 6)
    tasks = data.split_stream(train, test, 2, class_order=(5, 3, 1, 0, 2, 4))
    classes = [c for t in tasks for c in t.classes]
    assert sorted(classes) == list(range(6)) and len(set(classes)) == 6
    for task in tasks:
        original = np.asarray(task.classes)[task.y_train]
        kept = np.isin(y, task.classes)
        np.testing.assert_array_equal(original, y[kept])  # head label i <-> classes[i]
        np.testing.assert_array_equal(task.x_train, train.x[kept])
        assert task.num_classes == 2 and set(task.y_test) <= {0, 1}
    global_labels = data.split_stream(train, test, 3, task_incremental=False)
    assert global_labels[1].classes == (3, 4, 5) and set(global_labels[1].y_train) == {3, 4, 5}
    assert all(t.num_classes == 6 for t in global_labels)
    with pytest.raises(ValueError):
        data.split_stream(train, test, 4)


def test_permuted_stream_is_a_bijection_and_seeded():
    n, h, w, c = 2, 4, 5, 3
    # x[i, pixel, channel] encodes (pixel, channel) so every permuted entry says where it came from.
    x = (np.arange(h * w)[None, :, None] * 10 + np.arange(c)[None, None, :]).astype(np.float32)
    x = np.broadcast_to(x, (n, h * w, c)).reshape(n, h, w, c)
    ds = _dataset(x, [0, 1], 2)
    tasks = data.permuted_stream(ds, ds, num_tasks=3, seed=7)
    np.testing.assert_array_equal(tasks[0].x_train, x)  # task 0: identity
    for task in tasks[1:]:
        moved = task.x_train.reshape(n, h * w, c)
        perm = (moved[0, :, 0] // 10).astype(int)
        assert sorted(perm) == list(range(h * w)) and not np.array_equal(perm, np.arange(h * w))
        np.testing.assert_array_equal(moved[..., 1] - moved[..., 0], 1)  # channels move together
        np.testing.assert_array_equal(task.x_test, task.x_train)  # same permutation on test
    again = data.permuted_stream(ds, ds, num_tasks=2, seed=7)
    np.testing.assert_array_equal(again[1].x_train, tasks[1].x_train)  # prefix of a longer stream
    other = data.permuted_stream(ds, ds, num_tasks=2, seed=8)
    assert not np.array_equal(other[1].x_train, tasks[1].x_train)
    table = _dataset(np.arange(12, dtype=np.float32).reshape(2, 6), [0, 1], 2)
    assert sorted(data.permuted_stream(table, table, 2)[1].x_train[0]) == list(range(6))


def test_named_embedded_streams_are_deterministic():
    split = data.make_stream("split_digits", seed=1)
    assert len(split) == 5 and [t.classes for t in split][0] == (0, 1)
    assert sum(len(t.y_train) + len(t.y_test) for t in split) == 1797
    again = data.make_stream("split_digits", seed=1)
    np.testing.assert_array_equal(again[3].x_test, split[3].x_test)
    rotated = data.make_stream("rotated_mnist5k", n_train=50, n_test=20, num_tasks=3)
    assert [t.x_train.shape for t in rotated] == [(50, 28, 28, 1)] * 3
    assert len(data.make_stream("permuted_mnist5k", n_train=20, n_test=10)) == 5
    assert len(data.make_stream("rotated_digits")) == 5
    assert data.make_stream("split_mnist5k", n_train=100, n_test=50)[4].classes == (8, 9)


def test_pool_images_matches_a_loop_over_windows():
    x = np.random.default_rng(0).normal(size=(2, 7, 9, 3)).astype(np.float32)
    got = data.pool_images(x, 3)
    want = np.empty((2, 2, 3, 3), np.float32)
    for i in range(2):
        for j in range(3):
            want[:, i, j] = x[:, 3 * i : 3 * i + 3, 3 * j : 3 * j + 3].mean(axis=(1, 2))
    # Same 9-term float32 means, summed in a possibly different order.
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_array_equal(data.pool_images(x, 1), x)
    for bad in (0, 8, 2.0):
        with pytest.raises(ValueError, match="pool factor must be an int in 1..7"):
            data.pool_images(x, bad)
    with pytest.raises(ValueError, match=r"\(n, H, W, C\)"):
        data.pool_images(x[0], 2)


@pytest.mark.parametrize(
    ("name", "options"),
    [("rotated_mnist5k", {}), ("permuted_mnist5k", {}), ("rotated_digits", {"angles": (0, 9)}),
     ("split_mnist5k", {}), ("split_digits", {"task_incremental": False})],
)  # fmt: skip
def test_stream_heads_match_the_built_stream(name, options):
    tasks = data.make_stream(name, n_train=100, n_test=50, **options)
    assert data.stream_heads(name, **options) == (len(tasks), tasks[0].num_classes)


def test_stream_heads_of_the_paper_streams_read_no_data():
    # The paper sets are absent here: these come from the builders and class counts alone.
    assert data.stream_heads("split_cifar100") == (20, 5)
    assert data.stream_heads("split_tiny_imagenet", task_incremental=False) == (20, 200)
    assert data.stream_heads("rotated_mnist", angles=(0, 45)) == (2, 10)
