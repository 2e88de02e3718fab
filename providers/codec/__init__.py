"""Hand-written wire codecs with no I/O, shared by providers and the lab.

The lab may import only wire modules; these are wire formats too (the Image Factory's canonical
schematic encoding, Omni's siderov1 request signatures), so both sides use one implementation.
"""
