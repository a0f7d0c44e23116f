"""Multi-process training streams: for random-access sources (bundled datasets, image folders)
the concatenation over processes of each process's batch t is the one-process batch t, with
augmentation on, across epoch boundaries and after a resume; each process reads only the examples
it feeds. Streaming TFDS sources (cache='none') keep per-process shards."""

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxvision import data


def _digits(bundled_dir, **kw):
    c = data.default_config()
    c.name, c.data_dir = "digits", bundled_dir
    # random pad-crop and flip by default, + rotation and jitter: any seed mix-up shows
    c.rotation, c.color_jitter = 20.0, 0.4
    for k, v in kw.items():
        c[k] = v
    return c


def _take(cfg, n, *, batch, process_count=1, process_index=0, start_step=0, seed=5):
    pipe = data.build(
        cfg,
        "train",
        global_batch_size=batch,
        train=True,
        seed=seed,
        start_step=start_step,
        process_index=process_index,
        process_count=process_count,
    )
    it = iter(pipe)
    return pipe, [next(it) for _ in range(n)]


def _assert_concat_equal(per_process, reference):
    """per_process[p][i] is process p's batch i; reference[i] the one-process batch i."""
    for i, want in enumerate(reference):
        for key in ("image", "label", "mask"):
            got = np.concatenate([batches[i][key] for batches in per_process])
            np.testing.assert_array_equal(got, want[key], err_msg=f"batch {i} {key}")


def test_digits_global_batches_do_not_depend_on_process_count(bundled_dir, no_network):
    cfg = _digits(bundled_dir)
    b = 64
    pipe, ref = _take(cfg, 24, batch=b)  # 24 * 64 = 1536 > 1439: crosses into epoch 2
    n = pipe.info.num_examples
    assert n == 1439 and 22 * b < n < 23 * b  # batch 22 holds the epoch boundary
    # augmentation is on: same examples (labels) as without it, but other pixels
    plain = _take(_digits(bundled_dir, flip=False, rotation=0.0, color_jitter=0.0,
                          train_crop="resize"), 1, batch=b)[1][0]  # fmt: skip
    np.testing.assert_array_equal(plain["label"], ref[0]["label"])
    differ = [not np.allclose(x, y) for x, y in zip(plain["image"], ref[0]["image"], strict=True)]
    assert np.mean(differ) > 0.5
    for p_count in (2, 4):
        firsts, resumed = [], []
        for p in range(p_count):
            pipe_p, first = _take(cfg, 2, batch=b, process_count=p_count, process_index=p)
            assert pipe_p.info.local_batch_size == b // p_count
            assert pipe_p.info.num_examples == n
            firsts.append(first)
            # resume at step 21: batches 21, 22 (epoch boundary), 23, from index arithmetic
            resumed.append(
                _take(cfg, 3, batch=b, process_count=p_count, process_index=p, start_step=21)[1]
            )
        _assert_concat_equal(firsts, ref[:2])
        _assert_concat_equal(resumed, ref[21:24])
    # resuming the one-process stream is exact too
    _assert_concat_equal([_take(cfg, 2, batch=b, start_step=22)[1]], ref[22:24])


def test_digits_epochs_are_permutations_split_over_processes(bundled_dir, no_network):
    """Without augmentation images identify examples (sklearn's digits are all distinct)."""
    cfg = _digits(
        bundled_dir, flip=False, rotation=0.0, color_jitter=0.0,
        train_crop="resize", mean="none", std="none",
    )  # fmt: skip
    builder = tfds.builder("digits", data_dir=bundled_dir)
    raw = tfds.as_numpy(builder.as_dataset(split="train", batch_size=-1))
    split = sorted(
        (x.astype(np.float32) / 255.0).tobytes() + bytes([int(y)])
        for x, y in zip(raw["image"], raw["label"], strict=True)
    )
    n, b, p_count = len(split), 60, 3
    per_process = [_take(cfg, 48, batch=b, process_count=p_count, process_index=p)[1]
                   for p in range(p_count)]  # fmt: skip
    assert sum(
        data.build(cfg, "train", global_batch_size=b, train=True, process_index=p,
                   process_count=p_count).info.num_local_examples
        for p in range(p_count)
    ) == n  # fmt: skip

    def keys(batch):
        return [x.tobytes() + bytes([int(y)]) for x, y in zip(batch["image"], batch["label"],
                                                               strict=True)]  # fmt: skip

    stream = []
    for i in range(48):
        parts = [set(keys(per_process[p][i])) for p in range(p_count)]
        if (i * b) // n == ((i + 1) * b - 1) // n:  # within one epoch: processes disjoint
            assert sum(map(len, parts)) == b and len(set().union(*parts)) == b
        for p in range(p_count):
            stream += keys(per_process[p][i])
    # each epoch is the whole split once, in a new order
    assert sorted(stream[:n]) == split and sorted(stream[n : 2 * n]) == split
    assert stream[:n] != stream[n : 2 * n]


def _folder(root, count=24):
    """Two classes; every image a distinct flat gray value (identifiable, any size)."""
    for i in range(count):
        cls = "a" if i % 3 else "b"
        path = root / cls / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (10 + i % 4, 12), 5 + 10 * i).save(path)
    return root


def _folder_cfg(root, **kw):
    c = data.default_config()
    c.name, c.path = "image_folder", str(root)
    c.val_fraction = c.test_fraction = 0.0
    c.image_size = 8
    c.color_jitter, c.rotation = 0.3, 30.0  # + flip and inception crop by default
    for k, v in kw.items():
        c[k] = v
    return c


@pytest.mark.parametrize("balanced", [False, True])
def test_image_folder_global_batches_do_not_depend_on_process_count(tmp_path, balanced):
    cfg = _folder_cfg(_folder(tmp_path / "imgs"), balanced_sampling=balanced)
    b = 8
    _, ref = _take(cfg, 7, batch=b)  # 56 positions over 24 images: epochs 0, 1 and 2
    assert not np.array_equal(ref[0]["image"], ref[3]["image"])
    for p_count in (2, 4):
        _assert_concat_equal(
            [_take(cfg, 4, batch=b, process_count=p_count, process_index=p)[1]
             for p in range(p_count)],
            ref[:4],
        )  # fmt: skip
        _assert_concat_equal(
            [_take(cfg, 3, batch=b, process_count=p_count, process_index=p, start_step=4)[1]
             for p in range(p_count)],
            ref[4:7],
        )  # fmt: skip
    if balanced:  # class 'b' has 8 of 24 images, but half the draws
        labels = np.concatenate([x["label"] for x in ref])
        assert 0.3 < (labels == 1).mean() < 0.7


def test_image_folder_process_reads_only_the_files_it_feeds(tmp_path):
    root = _folder(tmp_path / "imgs")
    plain = _folder_cfg(root, flip=False, color_jitter=0.0, rotation=0.0, train_crop="resize",
                        mean="none", std="none")  # fmt: skip
    b, p_count = 4, 2
    # epoch 0 = 6 batches of 4; the gray value tells which file each position holds
    _, ref = _take(plain, 6, batch=b)
    values = np.concatenate([x["image"][:, 0, 0, 0] for x in ref])
    file_of = np.round((values * 255 - 5) / 10).astype(int)
    assert sorted(file_of) == list(range(24))
    fed_by_1 = [f for t in range(6) for f in file_of[t * b + b // 2 : (t + 1) * b]]
    # process 0's pipeline is built (folder indexed); then process 1's files are destroyed
    pipe = data.build(plain, "train", global_batch_size=b, train=True, seed=5, process_index=0,
                      process_count=p_count)  # fmt: skip
    for f in fed_by_1:
        (root / ("a" if f % 3 else "b") / f"{f:02d}.png").write_bytes(b"not an image any more")
    it = iter(pipe)
    got = [next(it) for _ in range(6)]  # would fail decoding if it touched process 1's files
    for t in range(6):
        np.testing.assert_array_equal(got[t]["image"], ref[t]["image"][: b // 2])
        np.testing.assert_array_equal(got[t]["label"], ref[t]["label"][: b // 2])


def test_streaming_tfds_keeps_per_process_shards_and_exact_resume(bundled_dir, no_network):
    """cache='none': no random access; each process streams its own tfds.even_splits shard."""
    cfg = _digits(bundled_dir, cache="none", rotation=0.0, color_jitter=0.0, flip=False,
                  train_crop="resize", mean="none", std="none")  # fmt: skip
    b, p_count = 64, 2
    for p, shard in enumerate(tfds.even_splits("train", p_count)):
        pipe, batches = _take(cfg, 24, batch=b, process_count=p_count, process_index=p)
        # read the builder only now: _take prepares the bundled dataset when this worker is the
        # first to use it, and a builder made before that has no splits
        builder = tfds.builder("digits", data_dir=bundled_dir)
        n_p = pipe.info.num_local_examples
        assert n_p == builder.info.splits[shard].num_examples and n_p < 24 * b // p_count
        raw = tfds.as_numpy(builder.as_dataset(split=shard, batch_size=-1))
        want = sorted((x.astype(np.float32) / 255.0).tobytes() for x in raw["image"])
        stream = [x.tobytes() for batch in batches for x in batch["image"]]
        assert sorted(stream[:n_p]) == want  # the process's first epoch: its shard, once
        resumed = _take(cfg, 2, batch=b, process_count=p_count, process_index=p, start_step=22)
        _assert_concat_equal([resumed[1]], batches[22:24])
