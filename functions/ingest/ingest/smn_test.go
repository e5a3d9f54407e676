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
	hosts := []string{"myhuaweicloud.com", "127.0.0.1"}
	for raw, ok := range map[string]bool{
		"https://smn.cn-north-4.myhuaweicloud.com/smn/SMN_cn-north-4_1.pem": true,
		"https://myhuaweicloud.com/x":                                       true,
		"https://SMN.MyHuaweiCloud.com./x":                                  true,
		"https://127.0.0.1:8443/certs/a.pem":                                true,
		"http://smn.cn-north-4.myhuaweicloud.com/x":                         false,
		"https://evilmyhuaweicloud.com/x":                                   false,
		"https://myhuaweicloud.com.evil.example/x":                          false,
		"https://user:pw@smn.myhuaweicloud.com/x":                           false,
		"https://10.127.0.0.1/x":                                            false,
		"ftp://myhuaweicloud.com/x":                                         false,
		"https://smn.cn-north-4.myhuaweicloud.com%2F.evil/x":                false,
		"//smn.myhuaweicloud.com/x":                                         false,
		"https://[::1]/x":                                                   false,
		"https://smn.cn-north-4.myhuaweicloud.com:443/x?a=b#c":              true,
	} {
		if _, err := allowedURL(hosts, raw); (err == nil) != ok {
			t.Errorf("allowedURL(%q) = %v; want allowed %v", raw, err, ok)
		}
	}
}

func TestTopicAllowed(t *testing.T) {
	t.Parallel()
	topics := []string{"urn:smn:cn-north-4:p1:uploads", "urn:smn:cn-east-3:p2:*"}
	for urn, ok := range map[string]bool{
		"urn:smn:cn-north-4:p1:uploads":  true,
		"urn:smn:cn-north-4:p1:uploads2": false,
		"urn:smn:cn-east-3:p2:anything":  true,
		"urn:smn:cn-east-3:p3:anything":  false,
		"":                               false,
	} {
		if got := topicAllowed(topics, urn); got != ok {
			t.Errorf("topicAllowed(%q) = %v, want %v", urn, got, ok)
		}
	}
}
