"""``python -m link.etcd``: the ``link-etcd`` command line (see :mod:`link.etcd.cli`)."""

from link.etcd.cli import main

if __name__ == "__main__":
    main(prog_name="python -m link.etcd")
