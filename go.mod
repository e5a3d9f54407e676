module github.com/imsflow/imsflow

go 1.26
