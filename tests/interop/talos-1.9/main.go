// Command oracle answers config cases with machinery v1.9.5 (Talos 1.9); see ../oracle.
package main

import "omniport.test/interop/oracle"

func main() { oracle.Main() }
