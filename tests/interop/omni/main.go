// Command omni drives Omni's own Go client and importer against a (lab) Omni; see ../README.md.
package main

import (
	"fmt"

	"github.com/siderolabs/omni/client/pkg/clusterimport"
)

// Placeholder entry point replaced by the real driver in the next commit; it proves the module
// graph builds.
func main() { fmt.Println(clusterimport.ErrValidation) }
