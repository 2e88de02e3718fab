"""The lab's Omni refuses config patches by the denylist of the release it answers as.

Omni's denylist grew: ``cluster.ca`` and ``cluster.serviceAccount`` and the rules for documents
other than v1alpha1 arrived in v1.10.0, ``machine.install.disk`` after v1.10.4. Omni v1.9.3's
own importer leaves those in its patches, so a lab answering as 1.9.3 must accept them.
"""

from __future__ import annotations

import pytest

from omniport.lab.omni_render import NEWEST, config_patch_problems, release_of

INSTALL_DISK = "machine:\n  install:\n    disk: /dev/sda\n"
CLUSTER_CA = "cluster:\n  ca:\n    crt: Zm9v\n"
CLUSTER_NAME = "cluster:\n  clusterName: other\n"
CA_DOC = "apiVersion: v1alpha1\nkind: KubeAPIServerCAConfig\nca:\n  crt: Zm9v\n"


@pytest.mark.parametrize(
    ("patch", "release", "refused"),
    [
        (INSTALL_DISK, "1.9.3", False),
        (INSTALL_DISK, "1.10.4", False),
        (INSTALL_DISK, "1.11.0-alpha.0", True),
        (CLUSTER_CA, "1.9.3", False),
        (CLUSTER_CA, "1.10.0", True),
        (CA_DOC, "1.9.3", False),
        (CA_DOC, "v1.10.4", True),
        (CLUSTER_NAME, "1.9.3", True),
        (CLUSTER_NAME, "1.11.0", True),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None,
)
def test_denylist_follows_the_release(patch: str, release: str, refused: bool) -> None:
    problems = config_patch_problems(patch, release_of(release))
    assert bool(problems) is refused, problems


def test_newest_is_the_default() -> None:
    assert config_patch_problems(INSTALL_DISK) == config_patch_problems(INSTALL_DISK, NEWEST)
    assert config_patch_problems(INSTALL_DISK)


@pytest.mark.parametrize("text", ["1.9", "latest", "1.x.0", ""])
def test_release_must_be_a_version(text: str) -> None:
    with pytest.raises(ValueError, match="is not an Omni release"):
        release_of(text)
