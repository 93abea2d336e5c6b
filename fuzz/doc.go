// Package fuzz holds instadump's fuzz targets. Run one with
//
//	go test -fuzz=FuzzSegment ./fuzz
//	go test -fuzz=FuzzManifest ./fuzz
//	go test -fuzz=FuzzCurrent ./fuzz
//
// Plain go test runs each target on its seed corpus under testdata/.
package fuzz
