// Package deploy holds the tests of the gateway's deployment files (the Helm chart under helm/).
// It is a module of its own so that the gateway's module never depends on Kubernetes or Helm.
package deploy
