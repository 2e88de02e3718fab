// Command oracle answers config cases with machinery v1.13.8 (Talos 1.13); see ../oracle.
package main

import "omniport.test/interop/oracle"

func main() { oracle.Main() }
