"""The lab's Omni and the client agree on the types Omni serves: one table of names, namespaces
and spec messages (``providers.codec.omni_resources``) feeds both."""

from __future__ import annotations

from omniport.lab.omni_types import TYPES, Access
from omniport.providers import omni as o
from omniport.providers.codec import omni_names


def test_the_lab_serves_every_type_the_client_decodes():
    served = {name: t for name, t in TYPES.items() if t.access is not Access.NONE}
    assert set(served) == set(o.RESOURCE_TYPES)
    for name, known in o.RESOURCE_TYPES.items():
        assert (served[name].namespace, served[name].spec) == (known.namespace, known.spec)
    internal = [t for t in TYPES.values() if t.access is Access.NONE]
    assert internal and all(t.spec is None and t.type not in o.RESOURCE_TYPES for t in internal)


def test_the_client_still_exports_every_omni_name():
    names = {k: v for k, v in vars(omni_names).items() if k.isupper()}
    assert len(names) > 30
    assert {k: getattr(o, k) for k in names} == names
    assert o.CLUSTERS == "Clusters.omni.sidero.dev"
    assert o.ANNOTATION_IMPORT_IN_PROGRESS == "omni.sidero.dev/cluster-import-is-in-progress"
    assert o.ANNOTATION_CONFIG_PATCH_NAME == "name"  # bare, unlike every other key
