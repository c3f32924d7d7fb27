"""Participant identity on the phone pages: who a person is when the brand's server did not
say (decision 0028). Sign-in by phone and a one-time SMS code, or by WeChat web
authorization; the person is a contact (contacts/), found again by their aliases; the pages
then know them by a signed session cookie."""
