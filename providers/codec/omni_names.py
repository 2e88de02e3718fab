"""The names on Omni's COSI wire: resource types, namespaces, label and annotation keys, phases.

Pure data. The client (:mod:`providers.omni`) and the lab's simulated Omni both speak these
names, and the lab may not import the client, so they live here once: a name spelled in one
place cannot drift between the side that sends it and the side that checks it. The lab's own
bookkeeping types, which Omni never serves, stay in ``lab.omni_types``.
"""

DEFAULT_NAMESPACE = "default"
EPHEMERAL_NAMESPACE = "ephemeral"
VIRTUAL_NAMESPACE = "virtual"

PHASE_RUNNING = "running"
PHASE_TEARING_DOWN = "tearingDown"

# resource types Omni serves (omni-wire.md section 1)
IMPORTED_CLUSTER_SECRETS = "ImportedClusterSecrets.omni.sidero.dev"
CLUSTERS = "Clusters.omni.sidero.dev"
MACHINE_SETS = "MachineSets.omni.sidero.dev"
MACHINE_SET_NODES = "MachineSetNodes.omni.sidero.dev"
CONFIG_PATCHES = "ConfigPatches.omni.sidero.dev"
CLUSTER_STATUSES = "ClusterStatuses.omni.sidero.dev"
CLUSTER_MACHINES = "ClusterMachines.omni.sidero.dev"
LINKS = "Links.omni.sidero.dev"
MACHINES = "Machines.omni.sidero.dev"
MACHINE_STATUSES = "MachineStatuses.omni.sidero.dev"
DEFAULT_JOIN_TOKENS = "DefaultJoinTokens.omni.sidero.dev"
SIDEROLINK_API_CONFIGS = "SiderolinkAPIConfigs.omni.sidero.dev"
TALOS_VERSIONS = "TalosVersions.omni.sidero.dev"
FEATURES_CONFIGS = "FeaturesConfigs.omni.sidero.dev"
SYS_VERSIONS = "SysVersions.system.sidero.dev"
NOTIFICATIONS = "Notifications.omni.sidero.dev"
IMAGE_FACTORY_AUTHS = "ImageFactoryAuths.omni.sidero.dev"
IMAGE_FACTORY_AUTH_ID = "image-factory-auth"

# label and annotation keys: all under one prefix but the config patch ones
LABEL_PREFIX = "omni.sidero.dev/"
LABEL_CLUSTER = LABEL_PREFIX + "cluster"
LABEL_MACHINE_SET = LABEL_PREFIX + "machine-set"
LABEL_CLUSTER_MACHINE = LABEL_PREFIX + "cluster-machine"
LABEL_MACHINE = LABEL_PREFIX + "machine"
LABEL_ROLE_CONTROLPLANE = LABEL_PREFIX + "role-controlplane"
LABEL_ROLE_WORKER = LABEL_PREFIX + "role-worker"
LABEL_TAINTED_BY_IMPORTING = LABEL_PREFIX + "tainted-by-importing"
LABEL_SYSTEM_PATCH = LABEL_PREFIX + "system-patch"
"""On a ConfigPatch Omni made itself (not the user's to edit)."""
LABEL_TALOS_VERSION = LABEL_PREFIX + "talos-version"
"""On a MachineStatus: the Talos version the machine reports (its spec's, "v" included)."""
LABEL_INSTALLED = LABEL_PREFIX + "installed"
"""On a MachineStatus: Talos is installed on the machine (not running from ISO or PXE)."""
ANNOTATION_CLUSTER_LOCKED = LABEL_PREFIX + "cluster-locked"
ANNOTATION_IMPORT_IN_PROGRESS = LABEL_PREFIX + "cluster-import-is-in-progress"
ANNOTATION_MACHINE_LOCKED = LABEL_PREFIX + "locked"
ANNOTATION_CONFIG_PATCH_NAME = "name"
ANNOTATION_CONFIG_PATCH_DESCRIPTION = "description"
