// Command oracle answers config cases with machinery v1.12.7 (Talos 1.12); see ../oracle.
package main

import "omniport.test/interop/oracle"

func main() { oracle.Main() }
