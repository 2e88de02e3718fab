// Command oracle answers config cases with machinery v1.10.9 (Talos 1.10); see ../oracle.
package main

import "omniport.test/interop/oracle"

func main() { oracle.Main() }
