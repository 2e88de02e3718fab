// Command talos-client-1.11 is Talos's own Go client from machinery v1.11.6 (Talos 1.11) against a
// Talos API endpoint; see ../talosclient.
package main

import "omniport.test/interop/talosclient"

func main() { talosclient.Main() }
