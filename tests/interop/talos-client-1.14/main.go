// Command talos-client-1.14 is Talos's own Go client from machinery v1.14.1 (Talos 1.14) against a
// Talos API endpoint; see ../talosclient.
package main

import "omniport.test/interop/talosclient"

func main() { talosclient.Main() }
