"""Identity and enrichment: lead ids, domains, accounts, region, phone, seniority."""

from __future__ import annotations

from workers.core import enrich, identity
from workers.settings import load_config


def test_lead_id_is_deterministic_and_normalised():
    assert identity.lead_id("Jane@Example.com ") == identity.lead_id("jane@example.com")
    assert identity.lead_id("jane@example.com") != identity.lead_id("john@example.com")
    assert identity.lead_id("jane@example.com").startswith("ld_")


def test_free_mail_and_disposable_come_from_published_lists():
    assert identity.is_free_mail("gmail.com")
    assert not identity.is_free_mail("acme.com")
    assert identity.is_disposable("mailinator.com")
    assert not identity.is_disposable("acme.com")


def test_company_key_strips_case_punctuation_and_legal_suffixes():
    assert identity.company_key("Acme Widgets, Inc.") == "acme widgets"
    assert identity.company_key("ACME WIDGETS LTD") == "acme widgets"
    assert identity.company_key("Siemens GmbH") == identity.company_key("siemens")
    assert identity.company_key("Volvo AB") == "volvo"


def test_account_matching_by_domain_then_name():
    book = enrich.AccountBook()
    book.put("acme.com", {"name": "Acme Widgets Inc.", "employees": 5000, "owner": "x"})
    assert book.match("acme.com", None)[1] == "domain"
    account, how = book.match("other.com", "ACME Widgets, Ltd")
    assert how == "company_name" and account["domain"] == "acme.com"
    assert book.match("other.com", "Globex")[1] == "none"
    book.put("acme.com", None)  # tombstone removes both indexes
    assert book.match("acme.com", "Acme Widgets")[1] == "none"


def test_region_and_time_zone_from_country():
    overrides = load_config().settings.regions.overrides
    assert enrich.region_of("US", overrides) == "AMER"
    assert enrich.region_of("BR", overrides) == "AMER"
    assert enrich.region_of("DE", overrides) == "EMEA"
    assert enrich.region_of("ZA", overrides) == "EMEA"
    assert enrich.region_of("JP", overrides) == "APAC"
    assert enrich.region_of("AU", overrides) == "APAC"
    assert enrich.region_of("AE", overrides) == "EMEA"  # Asia/Dubai, placed by override
    assert enrich.region_of(None, overrides) is None
    assert enrich.country_zone("JP") == "Asia/Tokyo"


def test_phone_to_e164():
    assert enrich.phone_e164("(415) 555-2671", "US") == "+14155552671"
    assert enrich.phone_e164("+44 20 7946 0958", None) == "+442079460958"
    assert enrich.phone_e164("12", "US") is None
    assert enrich.phone_e164("call me maybe", "US") is None


def test_seniority_from_job_title():
    matcher = enrich.SeniorityMatcher(load_config().scoring.seniority_keywords)
    assert matcher.level("Chief Revenue Officer") == "c_level"
    assert matcher.level("VP, Sales") == "vp"
    assert matcher.level("Senior Director of IT") == "director"
    assert matcher.level("Marketing Manager") == "manager"
    assert matcher.level("Marketing Intern") == "entry"
    assert matcher.level("Software Engineer") == "individual"
    assert matcher.level("Leadership coach") == "individual"  # whole words only
    assert matcher.level(None) is None
