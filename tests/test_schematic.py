"""The schematic codec: the factory's published IDs, go-yaml's own encoder cases, and edge cases
derived from go-yaml's rules (numeric/bool-like strings, multi-line config, option ordering)."""

import hashlib
import math

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from omniport.providers.codec.schematic import (
    Customization,
    DiskImage,
    GoMap,
    GoTimestamp,
    InvalidSchematic,
    MetaValue,
    Overlay,
    Schematic,
    SecureBoot,
    SystemExtensions,
    canonical_yaml,
    dump_go_yaml,
    is_schematic_id,
    parse_schematic,
    schematic_id,
)

EMPTY_ID = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

# The reference table: content, canonical text, ID (image-factory's schematic_test.go and
# integration tests; every ID also recomputed from the text).
VECTORS = [
    ("empty", Schematic(), "customization: {}\n", EMPTY_ID),
    (
        "kernel-args-noapic-nolapic",
        Schematic(customization=Customization(extra_kernel_args=("noapic", "nolapic"))),
        "customization:\n    extraKernelArgs:\n        - noapic\n        - nolapic\n",
        "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
    ),
    (
        "kernel-args-nolapic-nomodeset",
        Schematic(customization=Customization(extra_kernel_args=("nolapic", "nomodeset"))),
        "customization:\n    extraKernelArgs:\n        - nolapic\n        - nomodeset\n",
        "e0fb1129bbbdfb5d002e94af4cdce712a8370e850950a33a242d4c3f178c532d",
    ),
    (
        "meta-foo",
        Schematic(customization=Customization(meta=(MetaValue(0xA, "foo"),))),
        "customization:\n    meta:\n        - key: 10\n          value: foo\n",
        "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f",
    ),
    (
        "meta-json",
        Schematic(
            customization=Customization(meta=(MetaValue(0xA, '{"externalIPs":["1.2.3.4"]}'),))
        ),
        "customization:\n    meta:\n        - key: 10\n"
        '          value: \'{"externalIPs":["1.2.3.4"]}\'\n',
        "fe866116408a5a13dab7d5003eb57a00954ea81ebeec3fbbcd1a6d4462a00036",
    ),
    (
        "extensions-in-given-order",
        Schematic(
            customization=Customization(
                system_extensions=SystemExtensions(
                    ("siderolabs/amd-ucode", "siderolabs/gvisor", "siderolabs/gasket-driver")
                )
            )
        ),
        "customization:\n    systemExtensions:\n        officialExtensions:\n"
        "            - siderolabs/amd-ucode\n            - siderolabs/gvisor\n"
        "            - siderolabs/gasket-driver\n",
        "51ff3e49313773332729a5c04e57af0dbe2e6d3f65ff638e6d4c3a05065fefff",
    ),
    (
        "overlay-rpi",
        Schematic(overlay=Overlay(image="siderolabs/sbc-raspberrypi", name="rpi_generic")),
        "overlay:\n    image: siderolabs/sbc-raspberrypi\n    name: rpi_generic\n"
        "customization: {}\n",
        "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
    ),
    (
        "secureboot-well-known-certs",
        Schematic(
            customization=Customization(secureboot=SecureBoot(include_well_known_certificates=True))
        ),
        "customization:\n    secureboot:\n        includeWellKnownCertificates: true\n",
        "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6",
    ),
    (
        "bootloader-grub",
        Schematic(customization=Customization(bootloader="grub")),
        "customization:\n    bootloader: grub\n",
        "39d496b2cbdb6265d3b714514c5334bf010f1b4d31b23b9e38c80fb2f3ad7ecb",
    ),
    (
        "bootloader-sd-boot",
        Schematic(customization=Customization(bootloader="sd-boot")),
        "customization:\n    bootloader: sd-boot\n",
        "9ed5fecdacb36b5c5427b87d409f1065cfb2df69b0f71c58b868d9d466d8dab3",
    ),
    (
        "disk-image-4k",
        Schematic(customization=Customization(disk_image=DiskImage(4096))),
        "customization:\n    diskImage:\n        sectorSize: 4096\n",
        "92833e9ddd9bb9e11b2464fa5525429f01866306d52ebd882ee08d7918f6d1ea",
    ),
]


@pytest.mark.parametrize(
    ("schematic", "text", "want"), [v[1:] for v in VECTORS], ids=[v[0] for v in VECTORS]
)
def test_reference_vectors(schematic, text, want):
    assert canonical_yaml(schematic) == text
    assert hashlib.sha256(text.encode()).hexdigest() == want
    assert schematic_id(schematic) == want == schematic.id
    # reading the canonical text gives back the same value and the same ID
    assert parse_schematic(text) == schematic
    assert schematic_id(text) == want


# image-factory's TestUnmarshalID inputs (YAML/JSON as clients send them).
UNMARSHAL = [
    ("{}", EMPTY_ID),
    ("customization: {}", EMPTY_ID),
    ('customization: {"extraKernelArgs": []}', EMPTY_ID),
    (
        '{"customization": {"extraKernelArgs": ["noapic", "nolapic"]}}',
        "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
    ),
    (
        '{"customization": {"extraKernelArgs": ["noapic", "nolapic"], "systemExtensions": {}}}',
        "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
    ),
    (
        '{"customization": {"meta": [{"key": 10, "value": "foo"}], "extraKernelArgs": [], '
        '"systemExtensions": {}}}',
        "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f",
    ),
    (
        '{"overlay": {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi"}}',
        "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
    ),
    (
        '{"overlay": {"name": "rpi_generic", "image": "siderolabs/sbc-raspberrypi"},'
        '"customization":{}}',
        "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
    ),
    (
        '{"customization":{"secureboot": {"includeWellKnownCertificates": true}}}',
        "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6",
    ),
    # the api.md body written as YAML, with a hex META key
    (
        'customization:\n  meta:\n    - key: 0xa\n      value: \'{"externalIPs":["1.2.3.4"]}\'\n',
        "fe866116408a5a13dab7d5003eb57a00954ea81ebeec3fbbcd1a6d4462a00036",
    ),
    (
        "customization:\n  bootloader: GRUB\n",
        "39d496b2cbdb6265d3b714514c5334bf010f1b4d31b23b9e38c80fb2f3ad7ecb",
    ),
    ("customization:\n  bootloader: none\n", EMPTY_ID),
    ("customization: ~\n", EMPTY_ID),
    ("---\n", EMPTY_ID),
]


@pytest.mark.parametrize(("text", "want"), UNMARSHAL, ids=range(len(UNMARSHAL)))
def test_unmarshal_then_id(text, want):
    assert schematic_id(text) == want
    assert schematic_id(text.encode()) == want


def test_api_doc_example_id_is_illustrative_only():
    # api.md pairs 2a63b6e7... with this body, but the body hashes to eea1f953... .
    got = schematic_id("customization:\n    extraKernelArgs:\n        - vga=791\n")
    assert got.startswith("eea1f953")
    assert not got.startswith("2a63b6e7")


# go-yaml's own encoder test cases (testdata/encode.yaml), through the same emitter.
GO_YAML_ENCODE = [
    ({"v": "hi"}, "v: hi\n"),
    ({"v": "true"}, 'v: "true"\n'),
    ({"v": "false"}, 'v: "false"\n'),
    ({"v": True}, "v: true\n"),
    ({"v": -10}, "v: -10\n"),
    ({"v": 4294967296}, "v: 4294967296\n"),
    ({"v": "10"}, 'v: "10"\n'),
    ({"v": 0.1}, "v: 0.1\n"),
    ({"v": -0.1}, "v: -0.1\n"),
    ({"v": math.inf}, "v: .inf\n"),
    ({"v": -math.inf}, "v: -.inf\n"),
    ({"v": math.nan}, "v: .nan\n"),
    ({"v": None}, "v: null\n"),
    ({"v": ""}, 'v: ""\n'),
    ({"v": ["A", "B"]}, "v:\n    - A\n    - B\n"),
    ({"v": ["A", "B\nC"]}, "v:\n    - A\n    - |-\n      B\n      C\n"),
    ({"v": ["A", 1, {"B": [2, 3]}]}, "v:\n    - A\n    - 1\n    - B:\n        - 2\n        - 3\n"),
    ({"v": "\nhi"}, "v: |-\n\n    hi\n"),
    ({"v": [{"v1": "\nhi"}]}, "v:\n    - v1: |-\n\n        hi\n"),
    ({"a": {"b": "c"}}, "a:\n    b: c\n"),
    ({"a": "-"}, "a: '-'\n"),
    ({"a": "<foo>"}, "a: <foo>\n"),
    ({"a": "1:1"}, "a: '1:1'\n"),
    ({"a": "\x00"}, 'a: "\\0"\n'),
    ({"a": "你好"}, "a: 你好\n"),
    ({"a": "2015-02-24T18:19:39Z"}, 'a: "2015-02-24T18:19:39Z"\n'),
    ({"a": "b: c"}, "a: 'b: c'\n"),
    ({"a": "Hello #comment"}, "a: 'Hello #comment'\n"),
    ({"a": "你好 #comment"}, "a: '你好 #comment'\n"),
    ({"a": {"b": [{"c": 1, "d": 2}]}}, "a:\n    b:\n        - c: 1\n          d: 2\n"),
    ({"a": "\t\n\t\n"}, 'a: "\\t\\n\\t\\n"\n'),
    ({"<<": []}, "'<<': []\n"),
    ({"foo": "<<"}, "foo: '<<'\n"),
    ({"a": "off"}, "a: 'off'\n"),
    ({"v": " hello"}, "v: ' hello'\n"),
    ({"v": "hello "}, "v: 'hello '\n"),
    ({"v": ": hello"}, "v: ': hello'\n"),
    ({"v": "null"}, 'v: "null"\n'),
    ({}, "{}\n"),
    ("\n", '"\\n"\n'),
    ("hello\nworld", "|-\n    hello\n    world\n"),
    ("123", '"123"\n'),
    (
        " This starts with space\nand is long enough\nfor literal style",
        "|4-\n     This starts with space\n    and is long enough\n    for literal style\n",
    ),
    ("a\n", "|\n    a\n"),
    (" a\n", "|4\n     a\n"),
    ("\n\n", '"\\n\\n"\n'),
    (" \n", '" \\n"\n'),
    ("\t \n\t", '"\\t \\n\\t"\n'),
    (" \nhello", '" \\nhello"\n'),
    ("  hello  \n", '"  hello  \\n"\n'),
    ("hello\n  ", '"hello\\n  "\n'),
    (
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 1234567890 "
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 1234567890 ",
        "'abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 1234567890 "
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 1234567890 '\n",
    ),
]


@pytest.mark.parametrize(("value", "want"), GO_YAML_ENCODE, ids=range(len(GO_YAML_ENCODE)))
def test_go_yaml_encoder_cases(value, want):
    assert dump_go_yaml(value) == want


# Derived edge cases: what go-yaml's resolver and emitter do with kernel arguments that look
# like other types. Double quotes: would read back as int/float/bool/null/timestamp. Single
# quotes: YAML 1.1 booleans and base-60 numbers, or text that cannot be plain.
KERNEL_ARG_QUOTING = [
    ("console=ttyS0", "console=ttyS0"),
    ("-init_on_alloc", "-init_on_alloc"),
    ("key=[1]", "key=[1]"),
    ("1", '"1"'),
    ("-1", '"-1"'),
    ("0x10", '"0x10"'),
    ("0o17", '"0o17"'),
    ("017", '"017"'),
    ("08", '"08"'),
    ("1_000", '"1_000"'),
    ("1e3", '"1e3"'),
    ("1.5", '"1.5"'),
    (".5", '".5"'),
    ("+.inf", '"+.inf"'),
    ("-0", '"-0"'),
    ("1e400", "1e400"),
    ("18446744073709551616", '"18446744073709551616"'),
    ("true", '"true"'),
    ("False", '"False"'),
    ("TRUE", '"TRUE"'),
    ("tRue", "tRue"),
    ("null", '"null"'),
    ("~", '"~"'),
    ("", '""'),
    ("2024-01-05", '"2024-01-05"'),
    ("2024-1-5", '"2024-1-5"'),
    ("2024-02-30", "2024-02-30"),
    ("2001-12-14 21:59:43.10", '"2001-12-14 21:59:43.10"'),
    ("2001-12-14t21:59:43.10-05:00", '"2001-12-14t21:59:43.10-05:00"'),
    ("yes", "'yes'"),
    ("On", "'On'"),
    ("n", "'n'"),
    ("1:20", "'1:20'"),
    ("190:20:30.15", "'190:20:30.15'"),
    ("<<", "'<<'"),
    ("{}", "'{}'"),
    ("[a]", "'[a]'"),
    ("*alias", "'*alias'"),
    ("&anchor", "'&anchor'"),
    ("!tag", "'!tag'"),
    ("%x", "'%x'"),
    ("@x", "'@x'"),
    ("`x", "'`x'"),
    ("a: b", "'a: b'"),
    ("a:b", "a:b"),
    ("a #b", "'a #b'"),
    ("a#b", "a#b"),
    ("- a", "'- a'"),
    ("---", "'---'"),
    ("it's", "it's"),
    ("'q'", "'''q'''"),
    ('"q"', "'\"q\"'"),
    ("tab\there", '"tab\\there"'),
    ("é", "é"),
    ("\u00a0x", "\u00a0x"),
    ("\x7f", '"\\x7F"'),
    ("\u0085", '"\\N"'),
    ("\ufeffx", '"\\uFEFF\\x78"'),
    ("\U0001f600", '"\\U0001F600"'),
    ("trailing ", "'trailing '"),
]


@pytest.mark.parametrize(("arg", "written"), KERNEL_ARG_QUOTING, ids=range(len(KERNEL_ARG_QUOTING)))
def test_kernel_argument_quoting(arg, written):
    schematic = Schematic(customization=Customization(extra_kernel_args=(arg,)))
    text = canonical_yaml(schematic)
    assert text == f"customization:\n    extraKernelArgs:\n        - {written}\n"
    assert parse_schematic(text) == schematic


def test_scalars_in_string_fields_keep_their_source_text():
    # go-yaml sets a string field to the scalar's text, whatever type it resolves to; null
    # elements of a []string are dropped.
    s = parse_schematic("customization:\n  extraKernelArgs: [1, true, ~, 0x10, 1.50, yes]\n")
    assert s.customization.extra_kernel_args == ("1", "true", "0x10", "1.50", "yes")
    assert canonical_yaml(s) == (
        "customization:\n    extraKernelArgs:\n"
        '        - "1"\n        - "true"\n        - "0x10"\n        - "1.50"\n'
        "        - 'yes'\n"
    )


EMBEDDED = (
    "apiVersion: v1alpha1\nkind: HostnameConfig\nhostname: my-custom-hostname\nauto: off\n"
    "---\napiVersion: v1alpha1\nkind: KmsgLogConfig\nname: remote-log\n"
    "url: tcp://10.0.0.50:5044/\n"
)


def test_multiline_embedded_machine_configuration_is_a_literal_block():
    schematic = Schematic(
        customization=Customization(
            embedded_machine_configuration=EMBEDDED, extra_kernel_args=("a",)
        )
    )
    want = (
        "customization:\n    embeddedMachineConfiguration: |\n"
        + "".join(f"        {line}\n" for line in EMBEDDED.splitlines())
        + "    extraKernelArgs:\n        - a\n"
    )
    assert canonical_yaml(schematic) == want
    assert parse_schematic(want) == schematic


@pytest.mark.parametrize(
    ("config", "header", "body"),
    [
        ("a: 1\nb: 2", "|-", "        a: 1\n        b: 2\n"),
        ("a: 1\n\n", "|+", "        a: 1\n\n"),
        ("  indented: 1\n", "|4", "          indented: 1\n"),
        ("\ta: 1\n", "|", "        \ta: 1\n"),
    ],
    ids=["strip", "keep", "indent-hint", "tab"],
)
def test_embedded_configuration_chomping_and_hints(config, header, body):
    schematic = Schematic(customization=Customization(embedded_machine_configuration=config))
    text = canonical_yaml(schematic)
    assert text == f"customization:\n    embeddedMachineConfiguration: {header}\n{body}"
    assert parse_schematic(text) == schematic


def test_embedded_configuration_with_trailing_spaces_is_double_quoted():
    schematic = Schematic(customization=Customization(embedded_machine_configuration="a: 1 \nb"))
    assert canonical_yaml(schematic) == (
        'customization:\n    embeddedMachineConfiguration: "a: 1 \\nb"\n'
    )


def test_overlay_options_are_written_in_go_yaml_natural_key_order():
    text = (
        "overlay:\n  image: img\n  name: rpi\n"
        "  options: {b: 1, a10: 2, a2: 3, A: 4, '10': 5, '9': 6, configTxt: \"x=1\\ny=2\\n\"}\n"
    )
    schematic = parse_schematic(text)
    assert canonical_yaml(schematic) == (
        "overlay:\n    image: img\n    name: rpi\n    options:\n"
        '        "9": 6\n        "10": 5\n        A: 4\n        a2: 3\n        a10: 2\n'
        "        b: 1\n        configTxt: |\n            x=1\n            y=2\n"
        "customization: {}\n"
    )
    # the same options in another order give the same ID
    reordered = parse_schematic(
        "overlay: {name: rpi, image: img, options: {configTxt: \"x=1\\ny=2\\n\", '9': 6, "
        "'10': 5, a2: 3, b: 1, A: 4, a10: 2}}"
    )
    assert reordered.id == schematic.id


def test_overlay_option_values_of_every_type():
    schematic = parse_schematic(
        "overlay:\n  image: img\n  name: rpi\n  options:\n"
        "    when: 2024-01-05\n    at: 2001-12-14t21:59:43.10-05:00\n    ratio: 1.50\n"
        "    big: 1e6\n    hex: 0x1F\n    off: off\n    none: ~\n    list: [1, x, {k: v}]\n"
        "    empty: {}\n    nested: {1: one, true: yes}\n    <<: {merged: 1, ratio: 9}\n"
    )
    options = schematic.overlay.options
    assert options["when"] == GoTimestamp(2024, 1, 5)
    assert options["ratio"] == 1.5 and options["merged"] == 1  # explicit keys win merges
    assert list(options["nested"].items()) == [(1, "one"), (True, "yes")]
    assert options["nested"] == GoMap([(True, "yes"), (1, "one")]) != GoMap([(1, "yes")])
    assert canonical_yaml(schematic) == (
        "overlay:\n    image: img\n    name: rpi\n    options:\n"
        "        at: 2001-12-14T21:59:43.1-05:00\n"
        "        big: 1e+06\n"
        "        empty: {}\n"
        "        hex: 31\n"
        "        list:\n            - 1\n            - x\n            - k: v\n"
        "        merged: 1\n"
        "        nested:\n            true: 'yes'\n            1: one\n"
        "        none: null\n"
        "        'off': 'off'\n"
        "        ratio: 1.5\n"
        "        when: 2024-01-05T00:00:00Z\n"
        "customization: {}\n"
    )


def test_owner_comes_first_and_full_struct_order():
    schematic = Schematic(
        owner="alice",
        overlay=Overlay(image="img", name="rpi", options={"k": "v"}),
        customization=Customization(
            embedded_machine_configuration="a: 1\n",
            extra_kernel_args=("x",),
            meta=(MetaValue(255, ""),),
            system_extensions=SystemExtensions(("siderolabs/iscsi-tools",)),
            bootloader="dual-boot",
            secureboot=SecureBoot("force", True),
            disk_image=DiskImage(512),
        ),
    )
    text = canonical_yaml(schematic)
    assert text == (
        "owner: alice\noverlay:\n    image: img\n    name: rpi\n    options:\n        k: v\n"
        "customization:\n    embeddedMachineConfiguration: |\n        a: 1\n"
        "    extraKernelArgs:\n        - x\n"
        '    meta:\n        - key: 255\n          value: ""\n'
        "    systemExtensions:\n        officialExtensions:\n"
        "            - siderolabs/iscsi-tools\n"
        "    bootloader: dual-boot\n"
        "    secureboot:\n        enrollKeys: force\n        includeWellKnownCertificates: true\n"
        "    diskImage:\n        sectorSize: 512\n"
    )
    assert parse_schematic(text) == schematic
    assert schematic.to_dict()["customization"]["meta"] == [{"key": 255, "value": ""}]


def test_canonical_text_reads_the_same_with_a_yaml_1_1_parser():
    schematic = Schematic(
        customization=Customization(
            extra_kernel_args=("yes", "1:20", "0o17", "1_000", "2024-01-05", "null", "x: y"),
            meta=(MetaValue(1, "{}"),),
        )
    )
    assert yaml.safe_load(canonical_yaml(schematic)) == schematic.to_dict()


ERRORS = [
    (
        "something: 1",
        "yaml: construct errors: line 1: field something not found in type schematic.Schematic",
    ),
    (
        "customization:\n  foo: 1\n  bar: 2\n",
        "yaml: construct errors: line 2: field foo not found in type schematic.Customization; "
        "line 3: field bar not found in type schematic.Customization",
    ),
    (
        "overlay: {foo: x}",
        "yaml: construct errors: line 1: field foo not found in type schematic.Overlay",
    ),
    (
        "customization: {meta: [{key: 1, value: x, extra: 1}]}",
        "yaml: construct errors: line 1: field extra not found in type schematic.MetaValue",
    ),
    (
        "customization: {meta: [{key: 256, value: x}]}",
        "yaml: construct errors: line 1: cannot construct !!int `256` into uint8",
    ),
    (
        "customization: {meta: [{key: '10', value: x}]}",
        "yaml: construct errors: line 1: cannot construct !!str `10` into uint8",
    ),
    (
        "customization: {meta: [{key: -1, value: x}]}",
        "yaml: construct errors: line 1: cannot construct !!int `-1` into uint8",
    ),
    (
        "customization: {bootloader: auto}",
        "yaml: construct errors: line 1: auto does not belong to BootloaderKind values",
    ),
    (
        "customization: {bootloader: [grub]}",
        "yaml: construct errors: line 1: cannot construct !!seq into "
        "imageropts.BootloaderKind (TextUnmarshaler)",
    ),
    (
        "customization: {secureboot: {includeWellKnownCertificates: 1}}",
        "yaml: construct errors: line 1: cannot construct !!int `1` into bool",
    ),
    (
        "customization: {diskImage: {sectorSize: 4k}}",
        "yaml: construct errors: line 1: cannot construct !!str `4k` into uint",
    ),
    (
        "customization: {extraKernelArgs: noapic}",
        "yaml: construct errors: line 1: cannot construct !!str `noapic` into []string",
    ),
    (
        "customization: {extraKernelArgs: [{a: b}]}",
        "yaml: construct errors: line 1: cannot construct !!map into string",
    ),
    (
        "customization: {extraKernelArgs: [2024-01-01]}",
        "yaml: construct errors: line 1: cannot construct !!timestamp `2024-01-01` into string",
    ),
    (
        "customization: {extraKernelArgs: [a-very-long-argument, 1]}\ncustomization: x",
        'yaml: construct errors: line 2: mapping key "customization" already defined at line 1',
    ),
    (
        "customization: a-long-string-value",
        "yaml: construct errors: line 1: cannot construct !!str `a-long-...` into "
        "schematic.Customization",
    ),
    (
        "overlay: {options: [a]}",
        "yaml: construct errors: line 1: cannot construct !!seq into map[string]interface {}",
    ),
    (
        "- customization",
        "yaml: construct errors: line 1: cannot construct !!seq into schematic.Schematic",
    ),
    (
        "customization: {extraKernelArgs: !!int abc}",
        "yaml: cannot construct !!str `abc` as a !!int",
    ),
    ("customization: [", "yaml: line 1: expected the node content, but found '<stream end>'"),
    ("customization:\n\tfoo: 1", "yaml: line 2: found character '\\t' that cannot start any token"),
    ("", "EOF"),
    ("# only a comment\n", "EOF"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS, ids=range(len(ERRORS)))
def test_invalid_schematics_name_the_problem_like_the_factory(text, message):
    with pytest.raises(InvalidSchematic) as info:
        parse_schematic(text)
    assert str(info.value) == message


def test_only_the_first_document_counts():
    assert schematic_id("customization: {}\n---\nnot: a schematic\n") == EMPTY_ID


def test_merges_fill_struct_fields_without_overriding():
    s = parse_schematic(
        "customization:\n  <<: {extraKernelArgs: [a], bootloader: grub}\n  bootloader: sd-boot\n"
    )
    assert s.customization.extra_kernel_args == ("a",)
    assert s.customization.bootloader == "sd-boot"


def test_model_rejects_values_the_factory_cannot_hold():
    with pytest.raises(ValueError, match="outside 0..255"):
        MetaValue(256, "x")
    with pytest.raises(ValueError, match="bootloader 'auto'"):
        Customization(bootloader="auto")
    with pytest.raises(ValueError, match="unsigned"):
        DiskImage(-1)
    with pytest.raises(TypeError, match="set"):
        canonical_yaml(Schematic(overlay=Overlay(options={"a": {1, 2}})))
    assert Customization(bootloader="none").bootloader == ""


def test_schematic_id_shape():
    assert is_schematic_id(EMPTY_ID)
    assert not is_schematic_id(EMPTY_ID.upper())
    assert not is_schematic_id(EMPTY_ID[:-1])


# Property: whatever the model holds, its canonical text reads back to the same schematic and
# is stable. One go-yaml quirk is excluded: a literal block whose text starts with a line break
# and whose first line starts with a space is written without an indentation hint, which no
# YAML reader can read back (the factory shares this quirk).
_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), max_codepoint=0x2FFFF), max_size=24
)
_LINES = st.lists(st.sampled_from(["a", " b", "c: d", "", "\t", "x ", "#", "- y"]), max_size=5)
_MULTILINE = _LINES.map("\n".join) | _LINES.map(lambda ls: "\n".join(ls) + "\n")


def _lossy(value: str) -> bool:
    if not value.startswith(("\n", "\r", "\x85", "\u2028", "\u2029")):
        return False
    first = next((line for line in value.splitlines() if line.strip()), "")
    return first.startswith(" ")


@settings(max_examples=200, deadline=None)
@given(
    args=st.lists(_TEXT, max_size=4),
    meta=st.lists(st.tuples(st.integers(0, 255), _TEXT), max_size=3),
    config=_MULTILINE | _TEXT,
    option_keys=st.lists(_TEXT, max_size=4),
    option_value=st.one_of(
        _TEXT, st.integers(-(2**63), 2**64 - 1), st.booleans(), st.none(), st.floats()
    ),
)
def test_canonical_text_round_trips(args, meta, config, option_keys, option_value):
    values = [*args, config, *(v for _, v in meta), *option_keys]
    if isinstance(option_value, str):
        values.append(option_value)
    assume(not any(_lossy(v) for v in values))
    schematic = Schematic(
        overlay=Overlay(options={k: option_value for k in option_keys}),
        customization=Customization(
            embedded_machine_configuration=config,
            extra_kernel_args=tuple(args),
            meta=tuple(MetaValue(k, v) for k, v in meta),
        ),
    )
    text = canonical_yaml(schematic)
    back = parse_schematic(text)
    assert canonical_yaml(back) == text
    if not (isinstance(option_value, float) and math.isnan(option_value)):
        assert back == schematic


def test_overlay_option_keys_are_strings():
    with pytest.raises(ValueError, match="must be strings"):
        Overlay(options={1: "x"})
