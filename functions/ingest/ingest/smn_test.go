package ingest

import (
	"reflect"
	"testing"
)

// TestStringsToSign: the SMN user guide's example ("Message Signature
// Verification"), character for character.
func TestStringsToSign(t *testing.T) {
	t.Parallel()
	subject := "demo"
	m := smnMessage{
		Type: "Notification", Message: "My test message", MessageID: "88c726942175432bac921eafd0036163",
		Subject: &subject, Timestamp: "2016-08-15T07:29:16Z", TopicURN: "urn:smn:regionId:74dc9e44d0cc4573adfce91cdfdd3ba9:xxxx",
	}
	want := "message\nMy test message\nmessage_id\n88c726942175432bac921eafd0036163\nsubject\ndemo\n" +
		"timestamp\n2016-08-15T07:29:16Z\ntopic_urn\nurn:smn:regionId:74dc9e44d0cc4573adfce91cdfdd3ba9:xxxx\ntype\nNotification\n"
	if got := m.stringsToSign(); !reflect.DeepEqual(got, []string{want}) {
		t.Errorf("notification:\n%q\nwant\n%q", got, want)
	}
	empty := ""
	m.Subject = &empty
	noSubject := "message\nMy test message\nmessage_id\n88c726942175432bac921eafd0036163\n" +
		"timestamp\n2016-08-15T07:29:16Z\ntopic_urn\nurn:smn:regionId:74dc9e44d0cc4573adfce91cdfdd3ba9:xxxx\ntype\nNotification\n"
	withEmpty := "message\nMy test message\nmessage_id\n88c726942175432bac921eafd0036163\nsubject\n\n" +
		"timestamp\n2016-08-15T07:29:16Z\ntopic_urn\nurn:smn:regionId:74dc9e44d0cc4573adfce91cdfdd3ba9:xxxx\ntype\nNotification\n"
	if got := m.stringsToSign(); !reflect.DeepEqual(got, []string{noSubject, withEmpty}) {
		t.Errorf("empty subject: %q", got)
	}
	c := smnMessage{
		Type: "SubscriptionConfirmation", Message: "You are invited to subscribe to topic: urn:smn:regionId:d91989905b8449b896f3a4f0ad57222d:demo. To confirm this subscription, Please visit the following SubscribeURL in this message.",
		MessageID: "def5c309cbff44d5a870787ed937edf8", SubscribeURL: "https://smn.example/confirm?token=1", Subject: &subject,
		Timestamp: "2016-08-15T07:29:16Z", TopicURN: "urn:smn:regionId:d91989905b8449b896f3a4f0ad57222d:demo",
	}
	want = "message\n" + c.Message + "\nmessage_id\ndef5c309cbff44d5a870787ed937edf8\nsubscribe_url\nhttps://smn.example/confirm?token=1\n" +
		"timestamp\n2016-08-15T07:29:16Z\ntopic_urn\nurn:smn:regionId:d91989905b8449b896f3a4f0ad57222d:demo\ntype\nSubscriptionConfirmation\n"
	if got := c.stringsToSign(); !reflect.DeepEqual(got, []string{want}) {
		t.Errorf("confirmation:\n%q\nwant\n%q", got, want)
	}
}

func TestAllowedURL(t *testing.T) {
	t.Parallel()
	hosts := []string{"smn.{region}.myhuaweicloud.com", "console.huaweicloud.com", "127.0.0.1:8443"}
	for raw, ok := range map[string]bool{
		"https://smn.cn-north-4.myhuaweicloud.com/smn/SMN_cn-north-4_1.pem": true,
		"https://SMN.CN-North-4.MyHuaweiCloud.com./smn/x.pem":               true,
		"https://smn.cn-north-4.myhuaweicloud.com:443/x?a=b#c":              true,
		"https://console.huaweicloud.com/smn/subscription/confirm?token=1":  true,
		"https://127.0.0.1:8443/certs/a.pem":                                true,
		"https://smn.sa-brazil-1.myhuaweicloud.com/smn/x.pem":               false, // another region than the topic's
		"https://smn.cn-north-4.myhuaweicloud.com:8443/x.pem":               false,
		"https://images.obs.cn-north-4.myhuaweicloud.com/smn/x.pem":         false,
		"https://smn.obs.myhuaweicloud.com/x.pem":                           false,
		"https://myhuaweicloud.com/x":                                       false,
		"https://evil.console.huaweicloud.com/x":                            false,
		"https://console.huaweicloud.com.evil.example/x":                    false,
		"http://smn.cn-north-4.myhuaweicloud.com/x.pem":                     false,
		"https://user:pw@smn.cn-north-4.myhuaweicloud.com/x":                false,
		"https://127.0.0.1/x":                                               false,
		"ftp://console.huaweicloud.com/x":                                   false,
		"https://smn.cn-north-4.myhuaweicloud.com%2F.evil/x":                false,
		"//smn.cn-north-4.myhuaweicloud.com/x":                              false,
		"https://[::1]/x":                                                   false,
	} {
		if _, err := allowedURL(hosts, "cn-north-4", raw); (err == nil) != ok {
			t.Errorf("allowedURL(%q) = %v; want allowed %v", raw, err, ok)
		}
	}
}

func TestTopicAllowed(t *testing.T) {
	t.Parallel()
	topics := []string{"urn:smn:cn-north-4:p1:uploads", "urn:smn:cn-east-3:p2:img-*"}
	for urn, ok := range map[string]bool{
		"urn:smn:cn-north-4:p1:uploads":     true,
		"urn:smn:cn-north-4:p1:uploads2":    false,
		"urn:smn:cn-east-3:p2:img-anything": true,
		"urn:smn:cn-east-3:p2:other":        false,
		"urn:smn:cn-east-3:p3:img-x":        false,
		"urn:smn:cn-east-3:p2:img-x:extra":  false,
		"":                                  false,
	} {
		if got := topicAllowed(topics, urn); got != ok {
			t.Errorf("topicAllowed(%q) = %v, want %v", urn, got, ok)
		}
	}
}

// TestValidateTopics: a wildcard may not reach into the region or the
// project, whose topics belong to other accounts.
func TestValidateTopics(t *testing.T) {
	t.Parallel()
	base := Config{Subject: "imsflow.in.objects.obs", MaxBodyBytes: 4096, RateLimit: 1, RateBurst: 1, PublishTimeout: 1, MaxConcurrent: 1}
	for topic, ok := range map[string]bool{
		"urn:smn:cn-north-4:p1:uploads": true,
		"urn:smn:cn-north-4:p1:*":       true,
		"urn:smn:cn-north-4:p1:up*":     true,
		"urn:smn:*":                     false,
		"urn:smn:cn-north-4:*":          false,
		"urn:smn:cn-north-4:*:uploads":  false,
		"urn:smn:cn-north-4:p1:u*p":     false,
		"urn:smn:cn-north-4:p1":         false,
		"uploads":                       false,
	} {
		c := base
		c.SMNTopics = []string{topic}
		if err := c.Validate(); (err == nil) != ok {
			t.Errorf("Validate with topic %q = %v; want valid %v", topic, err, ok)
		}
	}
}
