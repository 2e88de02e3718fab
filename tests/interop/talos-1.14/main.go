// Command oracle answers config cases with machinery v1.14.1 (Talos 1.14); see ../oracle.
package main

import "omniport.test/interop/oracle"

func main() { oracle.Main() }
