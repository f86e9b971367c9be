"""What the injection guard looks at in a text: hashed n-grams and structural signals.

Pure stdlib and fast (a few milliseconds per thousand characters), so every retrieved
chunk and tool result can be scanned. Text is NFKC-normalised and stripped of invisible
characters first, so zero-width tricks cannot hide a phrase from the n-grams; the tricks
themselves are signals. CJK text has no spaces, so character n-grams run over the whole
window, not word by word.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import unicodedata
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ownlight.guard.script_gates import GatedPattern, scripts_in

BUCKETS = 1 << 18
# Structural signals enter the model scaled up, so regularisation (tuned for thousands of
# n-gram features) does not shrink the few of them away; chosen by dev cross-validation.
SIGNAL_SCALE = 1.0
WINDOW = 600  # characters per scored window; a long document is scored window by window
STEP = 400
# a gram seen c times weighs 1 + log c
_ONE_PLUS_LOG = np.array([0.0] + [1.0 + math.log(c) for c in range(1, 4096)])

_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u00ad"
                        "\U000e0000-\U000e007f]")
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_URL = re.compile(r"https?://[^\s)\"'>]+", re.IGNORECASE)
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*https?://[^)\s]*[?&=][^)\s]*\)", re.IGNORECASE)
_BASE64 = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")
_ROLE = re.compile(
    r"<\|im_start\|>|<\|im_end\|>|<\|system\|>|\[/?INST\]|<</?SYS>>|^\s*#{2,}\s*(system|"
    r"instruction|assistant)\b|^\s*(system|assistant|developer)\s*[:：]|<start_of_turn>",
    re.IGNORECASE | re.MULTILINE)
# Phrase families an instruction to the assistant is made of, in the four languages
# Ownlight serves: what it overrides, whom it addresses, what it makes the model become,
# where it sends data. Each family is one signal; the n-grams learn the rest.
_AI = r"(?<![a-z])(?:ai|ＡＩ)(?![a-z])"  # "AI" as a word, also beside CJK text
_CUES = {
    "override": re.compile(
        r"\b(ignore|disregard|forget|override|bypass)\b.{0,40}\b(instruction|prompt|rule|"
        r"previous|above|prior|guideline)|\bnew (instructions|rules|task)\b|from now on|"
        r"忽略|无视|無視|忘记|忘掉|之前的(指令|指示|设定)|以前の指示|指示を無視|新的指令|"
        r"新しい指示|从现在开始|今から|игнорир|забудь|не обращай внимания|"
        r"(предыдущие|прежние) (инструкции|указания)|новые инструкции|с этого момента",
        re.IGNORECASE),
    # Whom a line speaks to: the assistant by name or role ("AI助手请注意", "要約AIへの注意",
    # "Нейросеть, которая пересказывает этот пост"), or by the task it is doing on the text
    # ("when you process this", "处理本内容时", "この内容を処理するときは"). Injected lines in
    # documents mostly do one or the other; texts about prompt injection do neither.
    "addressed": re.compile(
        r"\b(ai|assistant|chatbot|language model|llm)\b\s*[:,]|\bnote to (the )?(ai|assistant)|"
        r"\bif you are an? (ai|assistant|language model)|"
        r"\b(hey|dear|attention|instructions? for|message for|notes? (to|for)) (the )?(ai|"
        r"assistant|model|bot|llm|language model|summari[sz]er|reviewer bot)s?\b|"
        # "To the AI:" opens a line; "offered to the model as" in running prose does not
        r"(^|[\n(\[])\s*to (the )?(ai|assistant|model|bot|llm|language model|summari[sz]er)s?"
        r"\b[^.\n]{0,30}[:,]|\b(ai|assistant|"
        r"model|bot|llm)s? (reading|processing|summari[sz]ing|reviewing|handling) this\b|"
        r"@(ai|assistant|copilot|bot)\b|\b(when|while|before) (you )?(process|summari[sz]e|"
        r"answer|read|respond|rewrite)\w* (this|anything)|\bno matter what the content says|"
        rf"(ai|人工智能|智能)?助手[：:，,]|给{_AI}|致{_AI}|AIアシスタント|アシスタントへ|{_AI}へ|"
        rf"(给|对|致)[^，。：:\n]{{0,20}}({_AI}|人工智能|助手|大语言模型|大模型|机器人)|"
        rf"({_AI}|人工智能|助手|大语言模型|大模型)[^，。\n]{{0,6}}(请注意|注意|须知|说明|：|:)|"
        rf"如果你是[^，。\n]{{0,20}}({_AI}|人工智能|助手|模型)|(由|被){_AI}[^，。\n]{{0,6}}"
        r"(处理|阅读|总结)|处理本内容时|回答之前|无论内容是什么|"
        rf"({_AI}|アシスタント|言語モデル|ボット|LLM)[^、。\n]{{0,8}}(へ|の方へ|への指示|への注意)|"
        rf"(もし|あなたが)[^、。\n]{{0,20}}({_AI}|アシスタント|言語モデル)(です|であれば|なら)|"
        r"アシスタントは|を処理するときは|回答する前に|内容にかかわらず|"
        r"\b(ии|ассистент|нейросеть|языковая модель)\s*[:,]|для (ии|ассистента)|"
        r"(\bии|\bии-\w+|ассистент\w*|нейросет\w*|\bбот\w*|помощник\w*)\s*[,:]|"
        r"(если|когда) (ты|вы|это письмо|письмо|текст|документ)[^.!\n]{0,30}(\bии\b|"
        r"ассистент|нейросет|\bбот)|(указани\w+|инструкци\w+|примечани\w+|заметк\w+) для "
        r"(ии|ассистент|нейросет|модел|бот)|(\bии|ассистент\w*|нейросет\w*|\bбот\w*|"
        r"модел\w*),? (котор\w+|составляющ\w+|готовящ\w+|обрабатывающ\w+|читающ\w+|"
        r"пересказывающ\w+)|(при обработке|прежде чем (ответить|сообщить))",
        re.IGNORECASE),
    "persona": re.compile(
        r"\byou are (now|no longer)\b|\bact as\b|\bpretend (to be|you are)|\bDAN\b|"
        r"developer mode|jailbreak|do anything now|你现在是|扮演|开发者模式|越狱|"
        r"あなたは(今|これから)|開発者モード|脱獄|ты теперь|притворись|режим разработчика|"
        r"джейлбрейк", re.IGNORECASE),
    "reveal": re.compile(
        r"\b(reveal|print|show|output|repeat)\b.{0,30}\b(system prompt|instructions|hidden|"
        r"secret|password|api key)|system prompt|系统提示|提示词|システムプロンプト|"
        r"(раскрой|покажи|выведи).{0,30}(промпт|инструкц|пароль|ключ)|системн\w* (промпт|"
        r"инструкц)", re.IGNORECASE),
    "exfiltrate": re.compile(
        r"\b(send|forward|email|upload|post|transfer)\b.{0,60}\b(to|at)\b.{0,40}(@|https?://)|"
        r"(发送|转发|上传|发到).{0,40}(@|https?://|邮箱)|(送信|転送|アップロード).{0,40}"
        r"(@|https?://)|(@|https?://).{0,60}(に送|へ送|に転送)|"
        r"(отправ|перешл|загрузи).{0,60}(@|https?://)|curl .{0,80}\|\s*(sh|bash)",
        re.IGNORECASE),
}

# Families added after the first two releases of the models; kept apart so weights trained
# before them still load (their signals are appended, with zero weight, by ``GuardModel``).
# Each was found as a class of direct attacks the n-grams missed when the dev set they came
# from was held out of training (a leave-one-set-out reading of the dev files).
_LATER_CUES = {
    # Asking for what the deployment keeps secret: its keys, passwords, tokens, environment.
    # Whose secret matters: "tell me how to reset my password" is the commonest of requests,
    # so the secret must be the system's, the admin's or the assistant's own.
    "secrets": re.compile(
        r"\b(tell|give|show|print|list|output|reveal|paste|dump|answer with|read out)\b.{0,50}"
        r"\b(your|the admin\w*|the system'?s?|internal|stored|configured|the server'?s?) "
        r"(\w+ ){0,2}(passwords?|api[ _-]?keys?|tokens?|secrets?|credentials?|connection "
        r"strings?)\b|\benv(ironment)? variables?\b.{0,30}\b(values?|you can (see|read))|"
        r"\b(keys?|tokens?|passwords?|variables?) (you can (see|read|access)|in your (context|"
        r"config|environment))|"
        r"(告诉|给我|输出|列出|贴出|念|打印|发给)[^。\n]{0,30}(你的|系统|管理员|后台|内部|配置|"
        r"环境)[^。\n]{0,10}(密码|密钥|口令|令牌|token|连接字符串)|(你的|系统|后台|内部|配置|环境)"
        r"[^。\n]{0,10}(密码|密钥|口令|令牌|连接字符串)[^。\n]{0,10}(告诉我|发给我|输出|列出|贴出)|"
        r"环境变量[^。\n]{0,20}"
        r"(值|内容|输出|列出|发给)|"
        r"(あなたの|システムの|設定に保存されている|内部の|環境内で見える)[^。\n]{0,10}"
        r"(パスワード|APIキー|キー|トークン|接続文字列|秘密鍵)|環境変数[^。\n]{0,20}(値|出力|"
        r"書き出|教えて)|"
        r"(выведи|покажи|скажи|назови|ответь|перечисли|дай|пришли|отправь)[^.!?\n]{0,50}"
        r"(свой|свои|своей|твой|твои|администратор\w*|системн\w*|внутренн\w*|из (своей )?"
        r"конфигурац\w*)[^.!?\n]{0,20}(парол|ключ|токен|секрет|строк\w* подключения)|"
        r"(выведи|покажи|скажи|назови|ответь|перечисли|дай|пришли)[^.!?\n]{0,30}(парол|ключ|"
        r"токен|секрет)\w*[^.!?\n]{0,20}(администратор\w*|из (своей |твоей )?конфигурац)|"
        r"переменн\w* окружения[^.!?\n]{0,30}(значени|выведи|покажи)",
        re.IGNORECASE),
    # What came before the user's turn: "the first message", "everything you were told".
    "prior_text": re.compile(
        r"\b(first|initial|original|very first|opening) (message|prompt|instructions?)\b|"
        r"\beverything (you were|you've been|you have been) (told|given)|\b(words|text) "
        r"above\b|\bbefore (this|my) (message|conversation)|(最开始|最初|一开始)[^。\n]{0,10}"
        r"(收到|看到|给你)|(初期|最初の)(プロンプト|指示|メッセージ)|この(メッセージ|会話)の前|"
        r"(перв\w+|исходн\w+|начальн\w+) (сообщени|промпт|инструкци)|всё, что тебе (сказали|"
        r"дали)", re.IGNORECASE),
    # Rules declared void or suspended: "the earlier rules were a test", "filters are off".
    "rules_void": re.compile(
        r"\b(rules|instructions|guidelines|restrictions|filters?|policies)\b.{0,30}\b(were|are|"
        r"have been|is) (just )?(a test|void|lifted|disabled|suspended|off|no longer)|"
        r"\b(no|without|zero) (content )?(restrictions|filters|guidelines|censorship)\b|"
        r"\b(free|freed|released) from (its|your|all) (rules|guidelines|restrictions)|"
        r"\bnever (refuse|say (you|that you) can'?t)|\bno (apologies|"
        r"disclaimers|warnings)\b|(规定|规则|设定|限制|策略)[^。\n]{0,10}(测试|作废|过期|失效|"
        r"解除|别当真|不算)|(没有|不受)任何(限制|约束|审查)|不要(道歉|拒绝|警告)|"
        r"(ルール|制限|フィルタ|設定)[^。\n]{0,10}(テスト|無効|解除|終わり)|無制限モード|"
        r"(謝罪|注意書き|警告)[^。\n]{0,6}(禁止|不要|なし)|"
        r"(правил|ограничени|фильтр|указани)\w*[^.!?\n]{0,30}(тест|отмен|сняты|отключен|"
        r"недействительн)|без (фильтров|цензуры|предупреждений|оговорок)|"
        r"никаких (извинений|оговорок|предупреждений)|не отказывай", re.IGNORECASE),
    # A tool the assistant holds, called by name with the caller's arguments.
    "tool_call": re.compile(
        r"\b(call|invoke|run|use|trigger)\b (the )?`?[a-z]+_[a-z_]+`? (tool|function)|"
        r"(调用|用|使用) ?`?[a-z]+_[a-z_]+`? ?(工具|函数)|`?[a-z]+_[a-z_]+`? ?(ツール|関数)"
        r"(を?(呼び出|使|実行)|で)|"
        r"(вызови|используй|запусти) (инструмент|функци)", re.IGNORECASE),
    # A notice posing as the platform, its developers or a security team.
    "authority": re.compile(
        # "[SYSTEM MESSAGE]", not a markdown link "[Admin views](...)"; "a system message" is
        # what developers call a turn, so the bare phrase is not a notice
        r"\[(system|admin|developer|security)( (message|notice|note|override|update))?\](?!\()|"
        r"\b(system|admin|developer|platform|security|trust (and|&) safety) (team )?(notice|"
        r"announcement|override)|\bmessage from the (system|admin|developers?)|"
        r"\bfrom the (developers?|platform|security team|model provider)|\"role\"\s*:\s*\"system\"|"
        r"【?(系统|管理员|开发者|安全团队|平台)(通知|消息|指令|公告)】?|来自[^。\n]{0,10}"
        r"(安全团队|开发者|模型提供方|平台)|(システム|管理者|開発者|運営|プラットフォームチーム|"
        r"セキュリティチーム)(から)?の?(通知|お知らせ|新方針|指示)|"
        r"(системное|служебное) (уведомление|сообщение)|от (команды|разработчик|администратор)\w*|"
        r"политика безопасности обновлена", re.IGNORECASE),
    # Decode a hidden payload, then obey it.
    "decode_follow": re.compile(
        r"\b(decode|decrypt|deobfuscate|base64|rot13)\b.{0,60}\b(follow|execute|do what|obey|"
        r"carry out|comply)|(解码|解密|base64)[^。\n]{0,40}(照着做|执行|照做|按.{0,6}做)|"
        r"(デコード|復号|base64)[^。\n]{0,40}(従って|実行|その通り)|"
        r"(раскодируй|декодируй|расшифруй|base64)[^.!?\n]{0,60}(выполни|следуй|сделай)",
        re.IGNORECASE),
    # The three below were found on two dev sets no user-input model had learned (the fourth
    # writers' direct set and the addressee direct set), where a phrase family is a signal
    # that, unlike an n-gram, is not diluted by the rest of a long message.
    # What other users, customers or guests wrote or left: their messages, history, details.
    "others_data": re.compile(
        r"\b(other|another|previous|last|earlier) (users?|customers?|clients?|guests?|patients?|"
        r"members?|people|person|sellers?|buyers?)\b[^.?!\n]{0,40}\b(messages?|chats?|"
        r"conversations?|history|data|records?|details|e-?mails?|phones?|numbers?|addresses|"
        r"asked|sent|wrote|said|typed)|\b(messages?|chats?|conversations?|history|records?|"
        r"details|data) (of|from|with) (other|another|the previous|the last) (users?|"
        r"customers?|clients?|guests?|patients?|members?|people)|\b(chat|conversation|message|"
        r"order) (history|logs?) (of|for|with) (the |a |another )?(user|customer|client|guest|"
        r"patient|member)\b|"
        r"(其他|别的|其它|上一个|上一位|之前的|前面的)(用户|客户|顾客|人|住客|房客|患者|会员|买家|卖家)"
        r"[^。？！\n]{0,20}(聊天|对话|记录|信息|问题|手机|电话|邮箱|地址|资料|房间号|订单|问了|说了)|"
        r"(他の|別の|前の|ほかの)(ユーザー|利用者|お客様|お客さん|客|人|会員|患者|宿泊客|セラー)"
        r"[^。？！\n]{0,20}(会話|やりとり|やり取り|履歴|ログ|質問|メール|電話|住所|情報|部屋番号|注文)|"
        r"(други[хме]|остальн\w+|чуж\w+|предыдущ\w+) (пользовател|клиент|покупател|пациент|"
        r"гост|участник|собеседник|продав)\w*[^.!?\n]{0,40}(сообщени|переписк|истори|данн|"
        r"телефон|почт|email|адрес|заказ|писал|спрашивал|оставлял)|(сообщени|переписк|"
        r"истори|данн)\w* (других|остальных|чужих) (пользовател|клиент|покупател|пациент)|"
        r"(сообщени|переписк|телефон|почт|email|адрес)\w*[^.!?\n]{0,40}(други[хме]|остальн\w+|"
        r"чуж\w+) (пользовател|клиент|покупател|пациент|гост|участник)|(истори\w+ (переписки|"
        r"сообщений|чата|диалог\w*)|переписк\w+|диалог\w*) (с )?(пользовател|клиент|покупател|"
        r"пациент)\w*",
        re.IGNORECASE),
    # The deployment's own configuration asked for as data: its settings, setup text or
    # prompt as a field ("print(self.system_prompt)", "{"system_prompt": ...}").
    "own_config": re.compile(
        r"\b(print|echo|dump|puts|cat|console\.log)\b\W{0,3}[\w./]{0,30}system_?prompt|"
        r"\b(self|bot|assistant|agent|concierge)\.(system_?prompt|instructions)\b|"
        r"\b(show|print|paste|dump|give|tell|share|list|output|reveal|copy|send|what'?s in)\b"
        r"[^.?!\n]{0,30}\b(your|the bot'?s|the "
        r"assistant'?s) (hidden |internal |initial |full |whole |exact |original )*(config"
        r"(uration)?|setup|set-?up text|settings file|preprompt|pre-prompt)\b|"
        r"(你的|你们的|后台|系统)[^。？\n]{0,6}(配置|设定|设置|初始设定|提示词|人设)[^。？\n]{0,10}"
        r"(是什么|发给我|给我看|复制|输出|打印|贴出|念|列出)|"
        r"(裏設定|設定文|設定項目|初期設定|内部設定|システム設定)[^。？\n]{0,20}(教えて|見せて|"
        r"貼って|出して|出力|コピペ|書き出|言い換え)|"
        r"(выведи|покажи|скинь|пришли|перечисли|опиши|скопируй|дай)[^.!?\n]{0,30}(сво\w+|"
        r"тво\w+|внутренн\w+|скрыт\w+|системн\w+) (конфигурац|настройк|установк)|(тво\w+|"
        r"внутренн\w+|скрыт\w+|системн\w+) (конфигурац|настройк)\w*[^.!?\n]{0,30}(выведи|"
        r"покажи|скинь|пришли|напиши|скопируй)", re.IGNORECASE),
    # Checks and safeguards switched off by the one they guard against: moderation, filters,
    # verification, approval ("turn off moderation", "別验证了", "承認フローは飛ばして").
    "skip_checks": re.compile(
        r"\b(turn off|disable|switch off|deactivate|bypass|skip|suspend|waive)\b[^.?!\n]{0,20}"
        r"\b(moderation|filters?|safety|content polic\w+|guardrails?|verification|id check|"
        r"identity check|kyc|approval|authentication|2fa|prescription check)|"
        r"(关闭|关掉|取消|跳过|绕过|免除|免去|不用|别|不要)[^。，,\n]{0,8}(审核|过滤|验证|核验|审批|"
        r"人脸识别|身份验证|实名|安全检查|风控)|"
        r"(フィルター?|モデレーション|本人確認|承認フロー|承認|認証|審査|安全確認|チェック)"
        r"[^。、\n]{0,8}(オフ|解除|無効|飛ばし|スキップ|なし|省略|不要|抜き)|"
        r"(отключи|выключи|сними|убери|пропусти|обойди|отмени)[^.!?\n]{0,20}(модерац|фильтр|"
        r"цензур|проверк|верификац|подтвержден|ограничени)|(модерац|проверк|верификац)\w*"
        r"[^.!?\n]{0,20}(пропусти|пропустить|не нужн|отключ)", re.IGNORECASE),
}

# each family searched only in the scripts a window is written in (``script_gates``)
_GATED_CUES = {name: GatedPattern(pattern) for name, pattern in _CUES.items()}
_GATED_LATER_CUES = {name: GatedPattern(pattern) for name, pattern in _LATER_CUES.items()}

_LATIN = re.compile(r"[a-zA-Z]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")

SIGNALS = ("invisible", "homoglyph", "base64_instruction", "role_marker", "exfil_image",
           "urls", *(f"cue_{name}" for name in _CUES), "cue_families",
           *(f"cue_{name}" for name in _LATER_CUES))


@dataclass(frozen=True)
class Window:
    text: str
    signals: dict[str, float]


def normalise(text: str) -> tuple[str, int]:
    """NFKC text without invisible characters, and how many there were."""
    invisible = len(_INVISIBLE.findall(text))
    return unicodedata.normalize("NFKC", _INVISIBLE.sub("", text)), invisible


def windows(text: str) -> list[Window]:
    """The text in overlapping windows, each with its structural signals."""
    clean, invisible = normalise(text)
    spans = [clean[i : i + WINDOW] for i in range(0, max(len(clean) - WINDOW, 0) + 1, STEP)]
    if len(clean) > WINDOW and (len(clean) - WINDOW) % STEP:
        spans.append(clean[-WINDOW:])
    return [Window(span, signals(span, invisible)) for span in spans or [""]]


def signals(text: str, invisible: int = 0) -> dict[str, float]:
    scripts = scripts_in(text)
    cues = {f"cue_{name}": float(family.search(text, scripts))
            for name, family in _GATED_CUES.items()}
    later = {f"cue_{name}": float(family.search(text, scripts))
             for name, family in _GATED_LATER_CUES.items()}
    return {
        "invisible": min(invisible, 10) / 10,
        "homoglyph": float(any(_LATIN.search(w) and _CYRILLIC.search(w)
                               for w in text.split())),
        "base64_instruction": float(_hidden_instruction(text)),
        "role_marker": float(bool(_ROLE.search(text))),
        "exfil_image": float(bool(_MD_IMAGE.search(text))),
        "urls": min(len(_URL.findall(text)), 3) / 3,
        **cues,
        # Several families in one window (override + reveal, addressed + exfiltrate) is
        # what an instruction to the assistant looks like; one alone is ordinary text.
        "cue_families": min(max(sum(cues.values()) - 1, 0), 3) / 3,
        **later,
    }


def _hidden_instruction(text: str) -> bool:
    """A base64 blob that decodes to words (an instruction smuggled past a reader)."""
    for blob in _BASE64.findall(text)[:5]:
        blob = blob.rstrip("=")
        blob = blob[: len(blob) - len(blob) % 4]  # a payload cut short still decodes
        try:
            plain = base64.b64decode(blob, validate=True).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            continue
        # words in any script (CJK and Cyrillic too) with their punctuation; random bytes
        # (hashes, keys) decode to replacement characters and control bytes instead
        wordy = sum(ch.isalpha() or ch.isspace() or unicodedata.category(ch)[0] == "P"
                    for ch in plain)
        if wordy > 0.85 * len(plain) and sum(ch.isalpha() for ch in plain) >= 8:
            return True
    return False


def hashed(text: str, buckets: int = BUCKETS) -> dict[int, float]:
    """Sublinear counts of word uni/bigrams and character 2-4-grams, hashed (crc32): bucket
    -> value, L2-normalised, in the order the grams are first met (``hashed_arrays``)."""
    index, value = hashed_arrays(text, buckets)
    return dict(zip(index.tolist(), value.tolist(), strict=True))


def hashed_arrays(text: str, buckets: int = BUCKETS) -> tuple[np.ndarray, np.ndarray]:
    """``hashed`` as two arrays (buckets, values), what the models read.

    The grams are listed in comprehensions, counted by ``Counter`` and hashed by ``map``, all
    in C; the per-gram arithmetic is numpy's. Every value is the same to the last bit as the
    plain loop the weights were trained with gave (``tests/test_guard_hashing.py``): each is
    ``1 + log count``, grams that share a bucket are added in the order they were met, and
    the norm adds the squares one after another in that order."""
    lower = text.lower()
    words = _WORD.findall(lower)
    keys = ["w" + words[0]] if words else []
    for i in range(1, len(words)):
        keys.append("w" + words[i])
        keys.append("b" + words[i - 1] + " " + words[i])
    squeezed = " ".join(lower.split())
    size = len(squeezed)
    keys += ["c" + squeezed[j : j + 2] for j in range(size - 1)]
    keys += ["c" + squeezed[j : j + 3] for j in range(size - 2)]
    keys += ["c" + squeezed[j : j + 4] for j in range(size - 3)]
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    counts = Counter(keys)
    index = np.fromiter(map(zlib.crc32, map(str.encode, counts)), np.int64, len(counts))
    index %= buckets
    tally = np.fromiter(counts.values(), np.int64, len(counts))
    value = (_ONE_PLUS_LOG[tally] if tally.max() < len(_ONE_PLUS_LOG)
             else np.array([1.0 + math.log(c) for c in tally.tolist()]))
    index, value = _merge_shared_buckets(index, value, tally)
    norm = math.sqrt(np.add.accumulate(value * value)[-1]) or 1.0
    return index, value / norm


def _merge_shared_buckets(index: np.ndarray, value: np.ndarray,
                          tally: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One entry per bucket, where its first gram was met; grams that share it add up in the
    order they were met, as ``out[i] = out.get(i, 0.0) + 1.0 + log c`` did."""
    buckets, first, seen = np.unique(index, return_index=True, return_counts=True)
    if len(buckets) == len(index):
        return index, value
    value = value.copy()
    for bucket in buckets[seen > 1].tolist():
        at = np.flatnonzero(index == bucket).tolist()
        total = float(value[at[0]])
        for later in at[1:]:
            total = total + 1.0 + math.log(int(tally[later]))
        value[at[0]] = total
    keep = np.sort(first)
    return index[keep], value[keep]
