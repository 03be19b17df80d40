"""UI text in English and Simplified Chinese. A missing key is an error at import, not a blank label."""

from __future__ import annotations

LANGUAGES = ("en", "zh")

TEXT: dict[str, tuple[str, str]] = {
    # key: (English, 中文)
    "title": ("Report review", "报告审阅"),
    "login": ("Log in", "登录"),
    "logout": ("Log out", "退出"),
    "username": ("User name", "用户名"),
    "password": ("Password", "密码"),
    "login_failed": ("Wrong user name or password.", "用户名或密码错误。"),
    "worklist": ("Worklist", "工作列表"),
    "state": ("State", "状态"),
    "modality": ("Modality", "检查类型"),
    "date": ("Date", "日期"),
    "date_from": ("From", "起始"),
    "date_to": ("To", "截止"),
    "description": ("Description", "检查描述"),
    "accession": ("Accession", "检查号"),
    "reports": ("Reports", "报告"),
    "links": ("Links", "图像链接"),
    "drafts": ("Drafts waiting", "待审草稿"),
    "search": ("Search", "搜索"),
    "filter": ("Filter", "筛选"),
    "any": ("any", "全部"),
    "previous": ("Previous", "上一页"),
    "next": ("Next", "下一页"),
    "page": ("Page", "页"),
    "retry": ("Retry", "重试"),
    "reason": ("Reason", "原因"),
    "open": ("Open", "打开"),
    "no_studies": ("No studies match.", "没有符合条件的检查。"),
    "report_page": ("Report page", "报告页面"),
    "show_boxes": ("Show recognised lines", "显示识别的文字行"),
    "confidence": ("Confidence", "置信度"),
    "low": ("low", "低"),
    "high": ("high", "高"),
    "no_page_image": ("No page image for this report.", "该报告没有页面图像。"),
    "no_report": ("No report has been read for this study yet.", "该检查尚无已识别的报告。"),
    "paragraphs": ("Report text and links", "报告文字与图像链接"),
    "series": ("Series", "序列"),
    "image": ("Image", "图像"),
    "method": ("Method", "方法"),
    "unresolved": ("not found in the study", "检查中未找到"),
    "view": ("View", "查看"),
    "correct": ("Correct", "更正"),
    "remove": ("Remove", "删除"),
    "pick_instance": ("Pick another image", "选择其他图像"),
    "save": ("Save", "保存"),
    "corrected_by": ("corrected by", "更正人"),
    "draft": ("Machine-drafted findings", "机器草拟的所见"),
    "preliminary": ("PRELIMINARY - not reviewed", "初步结果 - 未经审阅"),
    "model": ("Model", "模型"),
    "version": ("version", "版本"),
    "approve": ("Approve", "批准"),
    "reject": ("Reject", "拒绝"),
    "approved_by": ("Approved by", "批准人"),
    "rejected_by": ("Rejected by", "拒绝人"),
    "no_draft": ("No machine draft for this study.", "该检查没有机器草稿。"),
    "edit_hint": ("One finding per line; edit before approving.", "每行一条所见；批准前可编辑。"),
    "viewer": ("Image viewer", "图像查看器"),
    "window": ("Window", "窗宽窗位"),
    "default": ("default", "默认"),
    "close": ("Close", "关闭"),
    "scroll_hint": ("Mouse wheel or arrow keys scroll through the series.", "鼠标滚轮或方向键浏览序列。"),
    "ground_truth": ("Export corrections (ground truth)", "导出更正（标准答案）"),
    "forbidden": ("Your role may not do this.", "您的角色无权执行此操作。"),
    "csrf": ("The form expired; reload the page and try again.", "表单已过期，请刷新页面后重试。"),
    "language": ("中文", "English"),
    "saved": ("Saved and republished.", "已保存并重新发布。"),
    "back": ("Back to worklist", "返回工作列表"),
    "instances": ("Instances", "实例"),
    "role": ("Role", "角色"),
    "save_draft": ("Save without approving", "保存（暂不批准）"),
    "saved_by": ("Edited, not yet approved, by", "已编辑（未批准），编辑人"),
    "withdraw": ("Withdraw approval", "撤销批准"),
    "withdrawn_by": ("Approval withdrawn by", "批准已撤销，撤销人"),
    "nothing_to_withdraw": ("There is no approval to withdraw.", "没有可撤销的批准。"),
    "add_link": ("Add a link", "添加链接"),
    "no_link": ("no image linked", "未链接图像"),
    "accounts": ("Accounts", "账户管理"),
    "display_name": ("Display name", "显示名称"),
    "status": ("Status", "状态"),
    "active": ("active", "启用"),
    "disabled": ("disabled", "已停用"),
    "disable": ("Disable", "停用"),
    "enable": ("Enable", "启用"),
    "reset_password": ("Reset password", "重置密码"),
    "new_password": ("New password", "新密码"),
    "change_role": ("Change role", "更改角色"),
    "add_user": ("Add account", "添加账户"),
    "created": ("Created", "创建时间"),
    "account_saved": ("Saved (and audited).", "已保存（已记录审计）。"),
    "primary": ("linked", "已链接"),
    "oidc_login": ("Sign in with", "使用以下方式登录："),
    "oidc_failed": (
        "Sign-in through the identity server failed, or no enabled account has that name.",
        "通过身份服务器登录失败，或没有该名称的已启用账户。",
    ),
    "sr_tree": (
        "A structured report has no page: its content tree, with the images it references.",
        "结构化报告没有页面：显示其内容树及引用的图像。",
    ),
}


def translator(lang: str) -> dict[str, str]:
    index = 1 if lang == "zh" else 0
    return {key: pair[index] for key, pair in TEXT.items()}


def pick_language(cookie: str | None, accept_language: str | None, default: str) -> str:
    if cookie in LANGUAGES:
        return str(cookie)
    for item in (accept_language or "").split(","):
        code = item.split(";")[0].strip().lower()
        if code.startswith("zh"):
            return "zh"
        if code.startswith("en"):
            return "en"
    return default
