"""Common English words, embedded (no download): what a capitalised word is when it is not a
name. ``STOP`` words are never names (function words, pronouns); ``COMMON`` words are not names
when they open a sentence or sit in a title-cased subject line ("Quick Question About Your Round").
"""

from __future__ import annotations


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOP = _words(
    """
a about above across after against all along also although am among an and any are aren't
around as asap at be because been before behind being below beneath beside between beyond
both but by can can't could couldn't did didn't do does doesn't doing don't dr during each
either else every except few for from fyi had hadn't has hasn't have haven't having he her
here here's hers herself him himself his how i i'd i'll i'm i've if in inside into is isn't
it it's its itself just let's may me might mine more most mr mrs ms must my myself near
neither no nor not of off ok okay on once one ones only onto or other ought our ours
ourselves out outside over own p.s past per ps same shall she should shouldn't since so some
such than that that's the their theirs them themselves then there there's these they this
those though through throughout till to too toward towards under underneath unless until
unto up upon us very via was wasn't we we'd we'll we're we've were weren't what whatever
when where whereas whether which whichever while who whoever whom whose why will with within
without won't would wouldn't yes yet you you'd you'll you're you've your yours yourself
yourselves
"""
)

COMMON = STOP | _words(
    """
roadmap roadmaps platform platforms pipeline pipelines strategy plans update updates
data security infrastructure cloud cost costs savings test tests testing quality speed
performance scale scaling sales marketing ops operations service services tool tools
software hardware app apps api apis integration integrations workflow workflows process
processes report results result numbers metrics revenue budget budgets price pricing plan
trial pilot proposal offer offers opportunity opportunities challenge challenges goals
priorities priority market markets industry customers users user clients client partner
partners vendor vendors office offices hire hires role roles job jobs career careers event
events conference webinar talk talks podcast blog article interview story stories case study
studies win wins milestone milestones anniversary congratulations welcome introducing intro
next steps step follow-up followup recap summary agenda notes note question questions ideas
idea thoughts feedback help support faster better cheaper safer simpler easier quicker
absolutely according acquired acquisition actually add added adding afternoon again ago
agree ahead aim allow almost alone already always amazing announced announcement another
answer anybody anyone anything anyway appreciate appreciated approach approximately area
article ask asked asking attached available away awesome back base based basically beautiful
become began begin believe besides best better big bit bravo brief briefly brilliant bring
build building built business busy call calling calls came care case catch catch-up
certainly chance change changes chat check checking cheers circle circling clear clearly
close coffee come coming common company congrats congratulations consider considering
conversation cool course curious currently customer customers day days deal dear definitely
delighted demo different discussion done double down early easy email emails end engineer
engineering engineers enjoy enjoyed enough especially even evening ever everybody everyone
everything exactly example excellent excited exciting expanding expansion expect experience
explore fact fair familiar fantastic far fast feedback feel finally find fine first firstly
folks follow following following-up forward found founder founders free friday full funding
further future fwd get getting give given glad go goal going good got great greetings grow
growing growth guess happy hard hear heard hello help helped helping helps hey hi high hired
hiring honestly hope hoped hopefully hoping however huge idea ideas imagine impressed
impressive incredible indeed inspired instead interest interested interesting intro
introduction keen know knowing kudos large last lastly late lately later latest launch
launched launching leader leaders leadership learn learned least less let like liked likely
little long look looked looking looks lot lots love loved low lunch made main major make
makes making many massive maybe mean meanwhile meet meeting mention mentioned mind minute
minutes moment monday month months morning much name nearly neat need needs never new news
next nice nobody none note noted nothing notice noticed now offer often oh open others
otherwise overall part particular particularly partnered partnership people perhaps
personally plan planning please pleased plus point possible post posted posts press pretty
probably problem product products project proud quarter question questions quick quickly
quite raise raised raising rather re reach reaching read reading ready real really reason
recent recently regarding regards related release remarkable remember reply reported reports
right roughly round said saturday saw say saying says secondly see seeing seem seems seen
send sending sent series set share shared sharing short show showed shows similar simple
sincerely solid solution someone something sometimes soon sorry sound sounds speak
specifically start started still strong struck sunday super support sure sync take taking
talk team teams tell thank thanks thing things think thinking thought thoughts thrilled
thursday time times today together told took top totally touch touching truly try trying
tuesday turn two understand unfortunately unlike use used useful using usually walkthrough
want wanted wanting wants warm warmly watch way ways wednesday week weeks welcome well went
whole wish wonder wondered wonderful wondering work worked working works world worth wow
write writing wrote year years
"""
)
