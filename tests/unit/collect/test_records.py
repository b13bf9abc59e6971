from loopscope.backends.linux.procfs import OwnerScan
from loopscope.collect.records import owner_gaps


def test_owner_gaps_name_counts_in_words_and_tell_root_why_not_to_run_as_root():
    scan = OwnerScan(denied_pids=1)
    (as_user,) = owner_gaps(scan, 0, 0, as_root=False)
    assert as_user.what == "fd tables of 1 process" and as_user.count == 1
    assert "run as root" in as_user.reason
    (as_root,) = owner_gaps(scan, 0, 0, as_root=True)
    assert "run as root" not in as_root.reason and "although running as root" in as_root.reason


def test_owner_gaps_plural_and_every_kind():
    gaps = owner_gaps(OwnerScan(denied_pids=3), 2, 5, as_root=False)
    assert [(g.what, g.count) for g in gaps] == [
        ("fd tables of 3 processes", 3),
        ("2 processes", 2),
        ("owner of 5 sockets", 5),
    ]
    assert owner_gaps(OwnerScan(), 0, 0) == []
