"""The review page at ``/ui``: login, worklist, study view, link corrections and the draft decision.

Server-rendered Jinja2 templates and one small script (``static/ui.js``), no CDN. A login is a
server-side session (cookie ``gw_session``, HttpOnly, SameSite=Lax); every form carries the session's CSRF
token, and the login form a double-submit token. Images on the page are DICOMweb rendered/thumbnail URLs
signed for the reader (see :mod:`gateway.dicomweb.access`), so an ``<img>`` needs no header.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.dicomweb.access import ROLES, Access
from gateway.index.models import DraftReview, LinkCorrection, Study
from gateway.ui import accounts, oidc, review, views
from gateway.ui.i18n import pick_language, translator

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
COOKIE = "gw_session"
LOGIN_CSRF = "gw_login_csrf"
OIDC_COOKIE = "gw_oidc"
CSP = (
    "default-src 'self'; img-src 'self' data:; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
Handler = Callable[[Request], Response]


class Forbidden(Exception):
    pass


class CsrfFailed(Exception):
    pass


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: f"{float(v):.3f}%"
    env.filters["conf_colour"] = lambda c: f"hsl({round(120 * max(0.0, min(1.0, float(c))))}, 85%, 40%)"
    env.filters["da"] = lambda d: f"{d[:4]}-{d[4:6]}-{d[6:8]}" if d and len(d) == 8 else (d or "")
    return env


class Ui:
    def __init__(self, sessions: sessionmaker[Session], settings: Any, access: Access) -> None:
        self.sessions = sessions
        self.settings = settings
        self.access = access
        self.env = _env()
        login = settings.ui.oidc
        self.oidc = oidc.OidcClient(login) if login is not None else None

    # -- plumbing --------------------------------------------------------------------------------------------
    def lang(self, request: Request) -> str:
        return pick_language(
            request.cookies.get("gw_lang"), request.headers.get("accept-language"), self.settings.ui.language
        )

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        lang = self.lang(request)
        oidc_name = self.settings.ui.oidc.display_name if self.oidc is not None else None
        html = self.env.get_template(name).render(
            t=translator(lang), lang=lang, request=request, oidc_name=oidc_name, **context
        )
        return HTMLResponse(html, status_code=status, headers=self.headers())

    @staticmethod
    def headers() -> dict[str, str]:
        return {
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store",
        }

    def user(self, request: Request) -> accounts.User | None:
        with self.sessions() as session:
            return accounts.session_user(session, request.cookies.get(COOKIE))

    def page(
        self, handler: Callable[[Request, accounts.User], Response], *, action: str = "review"
    ) -> Handler:
        """Login required; POSTs need the CSRF token; the role must allow ``action`` for POSTs."""

        def wrapped(request: Request) -> Response:
            user = self.user(request)
            if user is None:
                if request.method == "GET":
                    return RedirectResponse(f"/ui/login?next={quote(request.url.path)}", status_code=303)
                return JSONResponse({"error": "login required"}, status_code=401)
            try:
                # Administration pages are not even shown to readers; other pages are, their forms are not.
                if (request.method == "POST" or action == "admin") and not self.access.may(user.role, action):
                    raise Forbidden
                return handler(request, user)
            except Forbidden:
                return self.render(
                    request,
                    "message.html",
                    403,
                    user=user,
                    message=translator(self.lang(request))["forbidden"],
                )
            except CsrfFailed:
                return self.render(
                    request, "message.html", 403, user=user, message=translator(self.lang(request))["csrf"]
                )

        return wrapped

    @staticmethod
    def check_csrf(form: Any, user: accounts.User) -> None:
        given = str(form.get("csrf", ""))
        if not user.csrf or not hmac.compare_digest(given.encode(), user.csrf.encode()):
            raise CsrfFailed

    def form(self, request: Request) -> dict[str, str]:
        # The sync handler runs in a worker thread; read the urlencoded body through the running loop.
        import anyio.from_thread

        async def read() -> dict[str, str]:
            form = await request.form()
            return {k: str(v) for k, v in form.items()}

        return anyio.from_thread.run(read)

    def sign(self, user: accounts.User, path: str) -> str:
        return self.access.sign(path, f"ui:{user.username}")

    def study(self, session: Session, uid: str) -> Study:
        study = session.scalar(select(Study).where(Study.study_instance_uid == uid))
        if study is None:
            raise KeyError(uid)
        return study

    # -- login -----------------------------------------------------------------------------------------------
    def login(self, request: Request) -> Response:
        if request.method == "GET":
            token = secrets.token_urlsafe(24)
            response = self.render(
                request,
                "login.html",
                user=None,
                login_csrf=token,
                error=None,
                next=request.query_params.get("next", "/ui/worklist"),
            )
            response.set_cookie(
                LOGIN_CSRF,
                token,
                httponly=True,
                samesite="strict",
                secure=self.settings.ui.secure_cookies,
                path="/ui/login",
            )
            return response
        form = self.form(request)
        expected = request.cookies.get(LOGIN_CSRF, "")
        target = form.get("next", "/ui/worklist")
        if not target.startswith("/ui/") or target.startswith("//"):
            target = "/ui/worklist"
        if not expected or not hmac.compare_digest(form.get("csrf", "").encode(), expected.encode()):
            return self.render(
                request, "message.html", 403, user=None, message=translator(self.lang(request))["csrf"]
            )
        with self.sessions.begin() as session:
            user = accounts.authenticate(session, form.get("username", ""), form.get("password", ""))
            if user is None:
                accounts.audit(
                    session, None, "login-failed", None, {"username": form.get("username", "")[:64]}
                )
            else:
                cookie = accounts.open_session(session, user, self.settings.ui.session_lifetime)
                accounts.audit(session, user, "login", None, {})
        if user is None:
            token = secrets.token_urlsafe(24)
            response = self.render(
                request,
                "login.html",
                401,
                user=None,
                login_csrf=token,
                error=translator(self.lang(request))["login_failed"],
                next=target,
            )
            response.set_cookie(
                LOGIN_CSRF,
                token,
                httponly=True,
                samesite="strict",
                secure=self.settings.ui.secure_cookies,
                path="/ui/login",
            )
            return response
        response = RedirectResponse(target, status_code=303)
        self.set_session(response, cookie)
        response.delete_cookie(LOGIN_CSRF, path="/ui/login")
        return response

    def set_session(self, response: Response, cookie: str) -> None:
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=self.settings.ui.session_lifetime,
            httponly=True,
            samesite="lax",
            secure=self.settings.ui.secure_cookies,
            path="/",
        )

    # -- sign-in through the site's OpenID Connect server (gateway.ui.oidc) --------------------------------
    def oidc_redirect_uri(self, request: Request) -> str:
        login = self.settings.ui.oidc
        return str(login.redirect_uri or str(request.url_for("ui_oidc_callback")))

    def oidc_login(self, request: Request) -> Response:
        if self.oidc is None:
            return Response(status_code=404)
        pending = oidc.Pending.new()
        try:
            target = self.oidc.redirect(self.oidc_redirect_uri(request), pending)
        except oidc.OidcError as exc:
            log.warning("OpenID Connect sign-in unavailable: %s", exc)
            return self.render(request, "message.html", 502, user=None, message=str(exc))
        response = RedirectResponse(target, status_code=303)
        # SameSite=Lax: the server's redirect back is a top-level GET, which carries it.
        response.set_cookie(
            OIDC_COOKIE,
            pending.encode(),
            max_age=600,
            httponly=True,
            samesite="lax",
            secure=self.settings.ui.secure_cookies,
            path="/ui/oidc",
        )
        return response

    def oidc_callback(self, request: Request) -> Response:
        if self.oidc is None:
            return Response(status_code=404)
        t = translator(self.lang(request))
        pending = oidc.Pending.decode(request.cookies.get(OIDC_COOKIE))
        q = request.query_params
        failed: str | None = None
        claims: dict[str, Any] = {}
        if pending is None or not hmac.compare_digest(q.get("state", "").encode(), pending.state.encode()):
            failed = "state"
        elif q.get("error") or not q.get("code"):
            failed = f"server: {q.get('error', 'no code')[:64]}"
        else:
            try:
                claims = self.oidc.sign_in(q["code"], self.oidc_redirect_uri(request), pending)
            except oidc.OidcError as exc:
                failed = str(exc)
        name = str(claims.get(self.settings.ui.oidc.username_claim, "")) if not failed else ""
        with self.sessions.begin() as session:
            user = accounts.enabled_user(session, name) if name else None
            if user is None:
                failed = failed or "no enabled account for this sign-in"
                accounts.audit(session, None, "login-failed", None, {"via": "oidc", "why": failed[:120]})
            else:
                cookie = accounts.open_session(session, user, self.settings.ui.session_lifetime)
                accounts.audit(session, user, "login", None, {"via": "oidc"})
        if user is None:
            response = self.render(request, "message.html", 403, user=None, message=t["oidc_failed"])
        else:
            response = RedirectResponse("/ui/worklist", status_code=303)
            self.set_session(response, cookie)
        response.delete_cookie(OIDC_COOKIE, path="/ui/oidc")
        return response

    def logout(self, request: Request, user: accounts.User) -> Response:
        self.check_csrf(self.form(request), user)
        with self.sessions.begin() as session:
            accounts.close_session(session, request.cookies.get(COOKIE))
            accounts.audit(session, user, "logout", None, {})
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    def language(self, request: Request) -> Response:
        code = request.path_params["code"]
        back = request.query_params.get("next", "/ui/worklist")
        if not back.startswith("/ui/"):
            back = "/ui/worklist"
        response = RedirectResponse(back, status_code=303)
        if code in ("en", "zh"):
            response.set_cookie("gw_lang", code, max_age=365 * 86400, samesite="lax", path="/ui")
        return response

    # -- worklist --------------------------------------------------------------------------------------------
    def worklist(self, request: Request, user: accounts.User) -> Response:
        q = request.query_params
        page = q.get("page", "1")
        filters = views.Filters(
            state=q.get("state", "") if q.get("state", "") in views.STATES else "",
            modality=q.get("modality", "")[:16],
            date_from=q.get("from", "")[:10],
            date_to=q.get("to", "")[:10],
            text=q.get("q", "")[:64],
            page=max(1, int(page)) if page.isdigit() else 1,
        )
        size = self.settings.ui.page_size
        with self.sessions() as session:
            rows, total = views.worklist(session, filters, size)
        pages = max(1, (total + size - 1) // size)
        return self.render(
            request,
            "worklist.html",
            user=user,
            rows=rows,
            total=total,
            filters=filters,
            pages=pages,
            states=views.STATES,
            can_retry=self.access.may(user.role, "retry"),
        )

    def retry(self, request: Request, user: accounts.User) -> Response:
        from gateway.pipeline import jobs

        form = self.form(request)
        self.check_csrf(form, user)
        uid = request.path_params["uid"]
        with self.sessions() as session:
            study = self.study(session, uid)
            job_id = int(form.get("job", "0") or 0)
        ok = jobs.retry(self.sessions, job_id)
        with self.sessions.begin() as session:
            accounts.audit(session, user, "retry", study.id, {"job": job_id, "ok": ok})
        return RedirectResponse("/ui/worklist", status_code=303)

    # -- study view ------------------------------------------------------------------------------------------
    def study_view(self, request: Request, user: accounts.User) -> Response:
        uid = request.path_params["uid"]
        with self.sessions() as session:
            try:
                study = self.study(session, uid)
            except KeyError:
                return self.render(request, "message.html", 404, user=user, message=f"no study {uid}")
            document = views.report_document(session, study)
            all_corrections = review.corrections(session, study.id)
            pairs_links = review.corrected_links(views.links_of(session, study), all_corrections)
            draft = views.draft_of(session, study)
            decision = review.draft_review(session, study.id, study.version)
            pairs = views.study_instances(session, study)
            has_pdf = views.report_pdf_path(session, study) is not None
            # Every report read for the study; an SR (no page to draw) is shown as its content tree.
            reports = views.read_reports(session, study)
            primary_sop = (document or {}).get("source_sop_instance_uid")
            chosen = request.query_params.get("report") or primary_sop
            shown = next((inst for _, inst in reports if inst and inst.sop_instance_uid == chosen), None)
            sr = views.sr_tree(shown)
            report_list = [
                {
                    "sop": inst.sop_instance_uid,
                    "kind": str((doc.content or {}).get("source_kind") or ""),
                    "current": inst.sop_instance_uid == chosen,
                    "primary": inst.sop_instance_uid == primary_sop,
                }
                for doc, inst in reports
                if inst is not None
            ]
        base = f"/dicomweb/studies/{uid}"
        info: dict[str, dict[str, Any]] = {}
        series: dict[str, dict[str, Any]] = {}
        for inst, ser in pairs:
            if inst.rows is None:  # not an image (PDF, SR)
                continue
            path = f"{base}/series/{ser.series_instance_uid}/instances/{inst.sop_instance_uid}"
            entry = {
                "sop": inst.sop_instance_uid,
                "series": ser.series_instance_uid,
                "series_number": ser.series_number,
                "number": inst.instance_number,
                "modality": ser.modality,
                "thumbnail": self.sign(user, path + "/thumbnail"),
                "rendered": self.sign(user, path + "/rendered"),
            }
            info[inst.sop_instance_uid] = entry
            series.setdefault(
                ser.series_instance_uid,
                {
                    "number": ser.series_number,
                    "modality": ser.modality,
                    "description": ser.series_description,
                    "instances": [],
                },
            )["instances"].append(entry)
        paragraphs = views.paragraphs(document, pairs_links) if document else []
        for p in paragraphs:
            for s in p.sentences:
                for lv in s.links:
                    found = info.get(lv.link.sop_instance_uid or "")
                    if found:
                        lv.series_number, lv.instance_number = found["series_number"], found["number"]
                        lv.modality, lv.thumbnail = found["modality"], found["thumbnail"]
        draft_links: dict[int, list[views.LinkView]] = {}
        for original, link in pairs_links:
            if link.source == "draft" and link.sentence is not None:
                lv = views.LinkView(link, original)
                found = info.get(link.sop_instance_uid or "")
                if found:
                    lv.series_number, lv.instance_number = found["series_number"], found["number"]
                    lv.modality, lv.thumbnail = found["modality"], found["thumbnail"]
                draft_links.setdefault(link.sentence, []).append(lv)
        from gateway.align.windows import load_windows

        presets = [
            {"name": p.name, "center": p.center, "width": p.width, "modalities": p.modalities}
            for p in load_windows().presets
        ]
        data = {"series": series, "presets": presets}
        return self.render(
            request,
            "study.html",
            user=user,
            study=study,
            document=document,
            pages=views.pages(document) if document and has_pdf and chosen == primary_sop else [],
            sr=sr,
            reports=report_list,
            paragraphs=paragraphs,
            draft=draft,
            decision=decision,
            draft_links=draft_links,
            info=info,
            data_json=json.dumps(data, ensure_ascii=False).replace("</", "<\\/"),
            corrections=all_corrections,
            series=series,
            uid=uid,
            saved=request.query_params.get("saved") == "1",
        )

    def page_image(self, request: Request, user: accounts.User) -> Response:
        import pymupdf

        uid, number = request.path_params["uid"], int(request.path_params["number"])
        with self.sessions() as session:
            try:
                path = views.report_pdf_path(session, self.study(session, uid))
            except KeyError:
                path = None
        if path is None:
            return Response(status_code=404)
        with pymupdf.open(path) as doc:  # type: ignore[no-untyped-call]
            if not 1 <= number <= doc.page_count:
                return Response(status_code=404)
            png = doc[number - 1].get_pixmap(dpi=110).tobytes("png")
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})

    # -- review actions --------------------------------------------------------------------------------------
    def correct_link(self, request: Request, user: accounts.User) -> Response:
        form = self.form(request)
        self.check_csrf(form, user)
        uid = request.path_params["uid"]
        source = form.get("source", "report")
        paragraph = int(form["paragraph"]) if form.get("paragraph", "").isdigit() else None
        sentence = int(form["sentence"]) if form.get("sentence", "").isdigit() else None
        original = form.get("original_sop") or None
        new_sop = (form.get("new_sop") or None) if form.get("action") != "remove" else None
        with self.sessions.begin() as session:
            study = self.study(session, uid)
            new_series = review.series_of(session, new_sop) if new_sop else None
            if new_sop and new_series is None:
                return self.render(request, "message.html", 400, user=user, message=f"no instance {new_sop}")
            session.add(
                LinkCorrection(
                    study_fk=study.id,
                    source=source if source in ("report", "draft") else "report",
                    paragraph=paragraph,
                    sentence=sentence,
                    text=form.get("text", "")[:2000],
                    original_sop=original,
                    new_sop=new_sop,
                    new_series=new_series,
                    user_fk=user.id,
                )
            )
            accounts.audit(
                session,
                user,
                "link-remove"
                if new_sop is None
                else "link-add"
                if form.get("action") == "add"
                else "link-correct",
                study.id,
                {
                    "paragraph": paragraph,
                    "sentence": sentence,
                    "source": source,
                    "was": original,
                    "now": new_sop,
                },
            )
        self.republish(uid)
        return RedirectResponse(f"/ui/study/{uid}?saved=1", status_code=303)

    def draft_decision(self, request: Request, user: accounts.User) -> Response:
        form = self.form(request)
        self.check_csrf(form, user)
        uid = request.path_params["uid"]
        action = form.get("action", "")
        if action not in ("approve", "reject", "save", "withdraw"):
            return self.render(request, "message.html", 400, user=user, message="unknown action")
        with self.sessions.begin() as session:
            study = self.study(session, uid)
            draft = views.draft_of(session, study)
            if not draft or not draft.get("sentences"):
                return self.render(
                    request,
                    "message.html",
                    409,
                    user=user,
                    message=translator(self.lang(request))["no_draft"],
                )
            original = [str(s.get("text", "")) for s in draft["sentences"]]
            edited = [line.strip() for line in form.get("text", "").splitlines() if line.strip()]
            current = review.draft_review(session, study.id, study.version)
            if action == "withdraw":
                # Only an approval can be withdrawn; the approved text stays as the preliminary draft.
                if current is None or current[0].decision != "approved":
                    return self.render(
                        request,
                        "message.html",
                        409,
                        user=user,
                        message=translator(self.lang(request))["nothing_to_withdraw"],
                    )
                sentences = list(current[0].sentences)
            else:
                sentences = edited if action in ("approve", "save") else original
            if action in ("approve", "save") and not sentences:
                return self.render(request, "message.html", 400, user=user, message="nothing to approve")
            decision = {"approve": "approved", "reject": "rejected", "save": "saved", "withdraw": "withdrawn"}
            session.add(
                DraftReview(
                    study_fk=study.id,
                    study_version=study.version,
                    decision=decision[action],
                    sentences=sentences,
                    model_name=str(draft.get("model_name") or ""),
                    model_version=str(draft.get("model_version") or ""),
                    user_fk=user.id,
                )
            )
            if action in ("approve", "save") and sentences != original:
                accounts.audit(
                    session, user, "draft-edit", study.id, {"before": original, "after": sentences}
                )
            accounts.audit(
                session,
                user,
                f"draft-{action}",
                study.id,
                {
                    "version": study.version,
                    "model": draft.get("model_name"),
                    "model_version": draft.get("model_version"),
                    "sentences": sentences,
                },
            )
        self.republish(uid)
        return RedirectResponse(f"/ui/study/{uid}?saved=1", status_code=303)

    def republish(self, uid: str) -> None:
        """Publish the study again now, so FHIR shows the reader's word at once (a no-op until the pipeline
        has published it once; then the publish stage applies the review itself)."""
        from gateway.errors import StageError
        from gateway.pipeline.stage import StageContext
        from gateway.pipeline.stages import publish

        with self.sessions() as session:
            study = self.study(session, uid)
        if study.state != "done":
            return
        ctx = StageContext(self.settings, self.sessions, study.version, "publish")
        try:
            publish.run(ctx, study)
        except StageError:
            log.warning(
                "republishing after a review failed; the next publication will carry it", exc_info=True
            )

    # -- accounts (administrators) ---------------------------------------------------------------------------
    def users(self, request: Request, user: accounts.User, error: str | None = None) -> Response:
        with self.sessions() as session:
            rows = accounts.list_users(session)
        return self.render(
            request,
            "users.html",
            400 if error else 200,
            user=user,
            rows=rows,
            roles=ROLES,
            error=error,
            saved=request.query_params.get("saved") == "1",
        )

    def users_change(self, request: Request, user: accounts.User) -> Response:
        form = self.form(request)
        self.check_csrf(form, user)
        action = form.get("action", "")
        try:
            with self.sessions.begin() as session:
                if action == "add":
                    accounts.add_user(
                        session,
                        form.get("username", ""),
                        form.get("password", ""),
                        role=form.get("role", "reader"),
                        display_name=form.get("display_name") or None,
                        by=user,
                    )
                else:
                    accounts.change_user(
                        session,
                        user,
                        form.get("username", ""),
                        action=action,
                        role=form.get("role") or None,
                        password=form.get("password") or None,
                    )
        except accounts.AccountError as exc:
            return self.users(request, user, error=str(exc))
        return RedirectResponse("/ui/admin/users?saved=1", status_code=303)

    def ground_truth(self, request: Request, user: accounts.User) -> Response:
        uid = request.path_params["uid"]
        with self.sessions() as session:
            study = self.study(session, uid)
            items = review.corrections(session, study.id)
        return JSONResponse(
            review.ground_truth(uid, items),
            headers={"Content-Disposition": f'attachment; filename="ground-truth-{uid}.json"'},
        )


def build_ui_routes(sessions: sessionmaker[Session], settings: Any, access: Access) -> list[BaseRoute]:
    ui = Ui(sessions, settings, access)
    routes: list[BaseRoute] = [
        Route("/", lambda r: RedirectResponse("/ui/worklist", status_code=303), methods=["GET"]),
        Route("/login", ui.login, methods=["GET", "POST"]),
        Route("/logout", ui.page(ui.logout), methods=["POST"]),
        Route("/lang/{code}", ui.language, methods=["GET"]),
        Route("/oidc/login", ui.oidc_login, methods=["GET"]),
        Route("/oidc/callback", ui.oidc_callback, methods=["GET"], name="ui_oidc_callback"),
        Route("/worklist", ui.page(ui.worklist), methods=["GET"]),
        Route("/study/{uid}", ui.page(ui.study_view), methods=["GET"]),
        Route("/study/{uid}/page/{number:int}.png", ui.page(ui.page_image), methods=["GET"]),
        Route("/study/{uid}/ground-truth.json", ui.page(ui.ground_truth), methods=["GET"]),
        Route("/study/{uid}/link", ui.page(ui.correct_link), methods=["POST"]),
        Route("/study/{uid}/draft", ui.page(ui.draft_decision), methods=["POST"]),
        Route("/study/{uid}/retry", ui.page(ui.retry, action="retry"), methods=["POST"]),
        Route("/admin/users", ui.page(ui.users, action="admin"), methods=["GET"]),
        Route("/admin/users", ui.page(ui.users_change, action="admin"), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return [Mount("/ui", routes=routes)]
