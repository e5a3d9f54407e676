module github.com/imsflow/imsflow

go 1.26.0

require (
	github.com/caarlos0/env/v10 v10.0.0 // indirect
	golang.org/x/time v0.16.0 // indirect
)
