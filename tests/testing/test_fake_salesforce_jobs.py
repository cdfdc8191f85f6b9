"""FakeSalesforce serves Bulk API 2.0 query jobs as documented, in process and on loopback HTTP."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from incsync.testing.fakes.salesforce import FakeSalesforce

UTC = timezone.utc
T0 = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)
V = "/services/data/v59.0"
JOBS = f"{V}/jobs/query"
LONG_SESSION = timedelta(days=30)  # the tests move the clock by days


@pytest.fixture(params=["transport", "loopback"])
def fake_and_http(request: pytest.FixtureRequest) -> Iterator[tuple[FakeSalesforce, httpx.Client]]:
    """A fresh org, and an authorised client reaching it in process, then over loopback HTTP."""
    fake = FakeSalesforce(session_lifetime=LONG_SESSION)
    headers = {"Authorization": f"Bearer {fake.issue_access_token()}"}
    if request.param == "transport":
        with httpx.Client(
            transport=fake.transport(), base_url="https://fake.my.salesforce.com", headers=headers
        ) as http:
            yield fake, http
        return
    with fake.serve() as base_url, httpx.Client(base_url=base_url, headers=headers) as http:
        yield fake, http


def create(http: httpx.Client, soql: str, **extra: Any) -> dict[str, Any]:
    response = http.post(JOBS, json={"operation": "query", "query": soql, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refused(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    [body] = response.json()
    assert set(body) == {"errorCode", "message"}
    return str(body["errorCode"])


def accounts(fake: FakeSalesforce, count: int) -> list[str]:
    return fake.bulk_load("Account", ({"Name": f"Account {n}"} for n in range(count)), at=T0)


def test_a_job_is_queued_then_runs_then_completes_on_the_org_s_clock(
    fake_and_http: tuple[FakeSalesforce, httpx.Client],
) -> None:
    """UploadComplete, InProgress after half the delay, JobComplete after the delay plus a bit
    per row; results before that are 412 JOB_NOT_COMPLETE."""
    fake, http = fake_and_http
    accounts(fake, 50_000)
    job = create(http, "SELECT Id, Name FROM Account")
    assert job["state"] == "UploadComplete"
    assert (job["jobType"], job["contentType"], job["object"]) == ("V2Query", "CSV", "Account")
    assert refused(http.get(f"{JOBS}/{job['id']}/results"), 412) == "JOB_NOT_COMPLETE"
    fake.advance(timedelta(seconds=1))
    assert http.get(f"{JOBS}/{job['id']}").json()["state"] == "InProgress"
    fake.advance(timedelta(seconds=1, milliseconds=999))  # 2 s + 50,000 x 20 us = 3 s
    assert http.get(f"{JOBS}/{job['id']}").json()["state"] == "InProgress"
    fake.advance(timedelta(milliseconds=1))
    info = http.get(f"{JOBS}/{job['id']}").json()
    assert (info["state"], info["numberRecordsProcessed"]) == ("JobComplete", 50_000)


def results(http: httpx.Client, job: str, **params: str) -> httpx.Response:
    response = http.get(f"{JOBS}/{job}/results", params=params, headers={"Accept": "text/csv"})
    assert response.status_code == 200, response.text
    return response


def completed_job(fake: FakeSalesforce, http: httpx.Client, soql: str, **extra: Any) -> str:
    job = str(create(http, soql, **extra)["id"])
    fake.advance(timedelta(minutes=1))
    return job


def test_results_page_by_locator_with_the_header_on_every_page(
    fake_and_http: tuple[FakeSalesforce, httpx.Client],
) -> None:
    """maxRecords=2 over 5 rows: pages of 2, 2, 1, each a CSV with its header, counted by
    Sforce-NumberOfRecords; the last page's locator is "null"; a locator can be asked again."""
    fake, http = fake_and_http
    ids = accounts(fake, 5)
    job = completed_job(fake, http, "SELECT Id, Name FROM Account")
    seen: list[str] = []
    locator: str | None = None
    pages = []
    while locator != "null":
        params = {"maxRecords": "2"} | ({} if locator is None else {"locator": locator})
        page = results(http, job, **params)
        pages.append(page)
        table = list(csv.reader(io.StringIO(page.text, newline="")))
        assert table[0] == ["Id", "Name"]
        assert int(page.headers["Sforce-NumberOfRecords"]) == len(table) - 1
        seen += [row[0] for row in table[1:]]
        locator = page.headers["Sforce-Locator"]
    assert [int(p.headers["Sforce-NumberOfRecords"]) for p in pages] == [2, 2, 1]
    assert sorted(seen) == sorted(ids)
    again = results(http, job, maxRecords="2", locator=pages[0].headers["Sforce-Locator"])
    assert again.text == pages[1].text
    assert refused(http.get(f"{JOBS}/{job}/results", params={"locator": "bm9wZQ"}), 400)


def test_csv_quotes_every_value_and_writes_null_as_an_empty_one(
    fake_and_http: tuple[FakeSalesforce, httpx.Client],
) -> None:
    """Commas, quotes and newlines survive quoting; null is ""; a blank text is kept as null,
    as Salesforce keeps it; booleans, doubles, dates and times are written as Salesforce does."""
    fake, http = fake_and_http
    fake.define_sobject(
        "Ugly__c",
        {"T__c": "string", "D__c": "double", "B__c": "boolean", "Day__c": "date"},
    )
    fake.bulk_load(
        "Ugly__c",
        [
            {"T__c": 'a,"b"\r\nc', "D__c": 5, "B__c": True, "Day__c": date(2024, 2, 29)},
            {"T__c": "", "D__c": None, "B__c": False, "Day__c": None},
        ],
        at=T0,
    )
    soql = "SELECT T__c, D__c, B__c, Day__c, SystemModstamp FROM Ugly__c"
    job = completed_job(fake, http, soql)
    body = results(http, job).text
    assert body.startswith('"T__c","D__c","B__c","Day__c","SystemModstamp"\n')
    rows = sorted(list(csv.reader(io.StringIO(body, newline="")))[1:])
    assert rows == [
        ["", "", "false", "", "2024-06-03T09:00:00.000Z"],
        ['a,"b"\r\nc', "5.0", "true", "2024-02-29", "2024-06-03T09:00:00.000Z"],
    ]
    assert '"",""' in body  # null is an empty quoted value


def test_rows_come_in_no_useful_order_and_query_all_reads_the_recycle_bin(
    fake_and_http: tuple[FakeSalesforce, httpx.Client],
) -> None:
    fake, http = fake_and_http
    ids = accounts(fake, 300)
    fake.delete_record("Account", ids[7])
    job = completed_job(fake, http, "SELECT Id FROM Account")
    listed = results(http, job).text.split("\n")[1:-1]
    assert sorted(listed) != listed
    assert len(listed) == 299
    everything = completed_job(
        fake, http, "SELECT Id, IsDeleted FROM Account", operation="queryAll"
    )
    assert f'"{ids[7]}","true"' in results(http, everything).text


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"operation": "query", "query": "SELECT COUNT() FROM Account"}, 400, "INVALIDJOB"),
        ({"operation": "query", "query": "SELECT Id FROM Account OFFSET 5"}, 400, "INVALIDJOB"),
        ({"operation": "query", "query": "SELECT Nope FROM Account"}, 400, "INVALID_FIELD"),
        ({"operation": "insert", "query": "SELECT Id FROM Account"}, 400, "INVALIDJOB"),
        ({"operation": "query"}, 400, "INVALIDJOB"),
        (
            {"operation": "query", "query": "SELECT Id FROM Account", "contentType": "JSON"},
            400,
            "INVALIDJOB",
        ),
    ],
)
def test_jobs_salesforce_refuses_are_refused(
    fake_and_http: tuple[FakeSalesforce, httpx.Client], body: dict[str, str], status: int, code: str
) -> None:
    _, http = fake_and_http
    assert refused(http.post(JOBS, json=body), status) == code


def test_results_through_another_api_version_are_409(
    fake_and_http: tuple[FakeSalesforce, httpx.Client],
) -> None:
    fake, http = fake_and_http
    job = completed_job(fake, http, "SELECT Id FROM Account")
    assert refused(http.get(f"/services/data/v60.0/jobs/query/{job}/results"), 409)


def test_abort_delete_and_seven_days_of_retention(
    fake_and_http: tuple[FakeSalesforce, httpx.Client],
) -> None:
    fake, http = fake_and_http
    accounts(fake, 3)
    running = create(http, "SELECT Id FROM Account")["id"]
    aborted = http.patch(f"{JOBS}/{running}", json={"state": "Aborted"})
    assert aborted.json()["state"] == "Aborted"
    assert refused(http.patch(f"{JOBS}/{running}", json={"state": "Aborted"}), 400)
    assert http.delete(f"{JOBS}/{running}").status_code == 204
    assert refused(http.get(f"{JOBS}/{running}"), 404) == "NOT_FOUND"
    kept = completed_job(fake, http, "SELECT Id FROM Account")
    fake.advance(timedelta(days=6, hours=23))
    assert http.get(f"{JOBS}/{kept}").json()["state"] == "JobComplete"
    fake.advance(timedelta(hours=1))
    assert refused(http.get(f"{JOBS}/{kept}"), 404) == "NOT_FOUND"


def test_failed_and_admin_aborted_jobs(fake_and_http: tuple[FakeSalesforce, httpx.Client]) -> None:
    fake, http = fake_and_http
    fake.fail_bulk_jobs(1, message="Retried more than 15 times.")
    failed = completed_job(fake, http, "SELECT Id FROM Account")
    info = http.get(f"{JOBS}/{failed}").json()
    assert (info["state"], info["errorMessage"]) == ("Failed", "Retried more than 15 times.")
    assert refused(http.get(f"{JOBS}/{failed}/results"), 412)
    running = create(http, "SELECT Id FROM Account")["id"]
    assert fake.abort_bulk_jobs() == 1
    assert fake.bulk_jobs[running] == "Aborted"


def test_the_daily_job_limit_is_counted_in_limits_and_enforced() -> None:
    fake = FakeSalesforce(bulk_daily_limit=2, session_lifetime=LONG_SESSION)
    headers = {"Authorization": f"Bearer {fake.issue_access_token()}"}
    with httpx.Client(
        transport=fake.transport(), base_url="https://fake.my.salesforce.com", headers=headers
    ) as http:
        for _ in range(2):
            create(http, "SELECT Id FROM Account")
        limits = http.get(f"{V}/limits").json()["DailyBulkV2QueryJobs"]
        assert limits == {"Max": 2, "Remaining": 0}
        one_more = {"operation": "query", "query": "SELECT Id FROM Account"}
        assert refused(http.post(JOBS, json=one_more), 400) == "LIMIT_EXCEEDED"
        fake.advance(timedelta(days=1))
        create(http, "SELECT Id FROM Account")


def test_describe_names_each_field_s_type(
    fake_and_http: tuple[FakeSalesforce, httpx.Client],
) -> None:
    _, http = fake_and_http
    described = http.get(f"{V}/sobjects/opportunity/describe").json()
    assert described["name"] == "Opportunity"
    types = {field["name"]: field["type"] for field in described["fields"]}
    assert types["Amount"] == "double"
    assert types["SystemModstamp"] == "datetime"
    assert types["IsClosed"] == "boolean"
    assert refused(http.get(f"{V}/sobjects/Nope__c/describe"), 404) == "NOT_FOUND"
