// Command talos-client-1.13 is Talos's own Go client from machinery v1.13.8 (Talos 1.13) against a
// Talos API endpoint; see ../talosclient.
package main

import "omniport.test/interop/talosclient"

func main() { talosclient.Main() }
