// Command oracle answers config cases with machinery v1.11.6 (Talos 1.11); see ../oracle.
package main

import "omniport.test/interop/oracle"

func main() { oracle.Main() }
