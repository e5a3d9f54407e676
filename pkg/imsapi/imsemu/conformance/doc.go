// Package conformance drives the IMS emulator with Huawei's official Go
// SDK (huaweicloud-sdk-go-v3, services/ims/v2): every answer must decode
// into the SDK's types with the fields that matter filled. It is a module
// of its own so that the SDK stays out of imsflow's dependencies; make
// test runs it.
package conformance
