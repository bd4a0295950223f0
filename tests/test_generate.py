"""Continuous batching: sequences join and leave one llama.cpp context at any step, ids as if alone."""
import numpy as np

from asrgguf.generate import Batcher, Job, is_repeating


def test_repetition_guard_thresholds():
    assert is_repeating([5] * 32) and not is_repeating([5] * 31)
    assert is_repeating([1, 2, 3] + [7, 8] * 16) and not is_repeating([7, 8] * 15 + [9])
    assert is_repeating(list(range(100)) + list(range(10)) * 8)
    assert not is_repeating(list(range(200)))


def test_jobs_joining_late_get_the_ids_they_get_alone(gguf_pair, ck_gqa, clip5, clip20):
    """f32 pair: a job added while two others are mid-decode, and one reusing a freed sequence, produce
    exactly the ids each produces alone in a one-sequence batcher."""
    from asrgguf import Transcriber
    from asrgguf.pieces import iter_pieces
    from asrgguf.options import Options
    from support.reference import official_wav

    tr = Transcriber.from_gguf(*gguf_pair(ck_gqa, "f32"), threads=2)
    try:
        opts = Options.make(max_new_tokens=30, repetition_guard=False)
        pieces = [next(iter_pieces([official_wav(str(c))], 30.0)) for c in (clip5, clip20, clip5, clip20)]
        for i, p in enumerate(pieces):
            p.index = i

        def jobs(limits):
            return [tr.make_job(p, Options.make(max_new_tokens=n, repetition_guard=False)) for p, n in zip(pieces, limits)]
        limits = [30, 12, 25, 30]
        alone = []
        for job in jobs(limits):
            b = Batcher(tr.decoder, tr.stop_ids, 1, tr.positions_needed(opts))
            b.add(job)
            while b.active:
                b.step()
            alone.append(job.ids)
        b = Batcher(tr.decoder, tr.stop_ids, 2, tr.positions_needed(opts))
        js = jobs(limits)
        b.add(js[0])
        for _ in range(5):
            b.step()
        b.add(js[1])           # joins mid-way
        order = []
        queue = js[2:]
        while b.active or queue:
            while queue and b.free:
                b.add(queue.pop(0))  # takes the sequence the finished job left
            order += [js.index(j) for j in b.step()]
        assert [j.ids for j in js] == alone and sorted(order) == [0, 1, 2, 3]
        assert order[0] == 1 and b.free == 2  # the short one left first; every sequence is free again
        assert len(alone[1]) == 12 and all(len(a) > 12 for a in (alone[0], alone[2], alone[3]))
        assert len({tuple(a) for a in alone}) >= 2 and np.all([len(a) > 0 for a in alone])
    finally:
        tr.close()
